// Opening and validating .kiln artifacts. Every offset and size read from the
// file is checked before it is used; a corrupt file yields DATA_LOSS, never a
// read out of bounds.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "kiln/runtime/api.h"
#include "kiln/runtime/artifact_format.h"

struct kiln_artifact_s {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  void* mapping = nullptr;  // set when the runtime mapped the file itself
  uint32_t version = 0;
  uint32_t section_count = 0;
  kiln_artifact_section_v1_t* sections = nullptr;
};

namespace {

// Fields are read with memcpy: the buffer may be unaligned, and the format is
// little-endian like every host we build for.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the artifact reader assumes a little-endian host");

void Destroy(kiln_artifact_s* artifact) {
  if (!artifact) return;
  if (artifact->mapping) munmap(artifact->mapping, artifact->size);
  delete[] artifact->sections;
  delete artifact;
}

bool AllZero(const uint8_t* bytes, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (bytes[i]) return false;
  return true;
}

// Validates the header and table of `a` (data/size set) and fills the rest.
kiln_status_t Parse(kiln_artifact_s* a) {
  kiln_artifact_header_v1_t header;
  if (a->size < sizeof(header))
    return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                            "artifact is %llu bytes, shorter than its %zu-byte "
                            "header",
                            static_cast<unsigned long long>(a->size),
                            sizeof(header));
  std::memcpy(&header, a->data, sizeof(header));
  if (std::memcmp(header.magic, KILN_ARTIFACT_MAGIC, 4) != 0)
    return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                            "not a kiln artifact: bad magic at offset 0");
  if (header.version_major != KILN_ARTIFACT_VERSION_MAJOR)
    return KILN_MAKE_STATUS(
        KILN_STATUS_FAILED_PRECONDITION,
        "artifact format version %u.%u; this runtime reads version %u.x",
        header.version_major, header.version_minor,
        KILN_ARTIFACT_VERSION_MAJOR);
  if (header.header_size != sizeof(header))
    return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                            "header_size (offset 8) is %u, expected %zu",
                            header.header_size, sizeof(header));
  if (header.file_size != a->size)
    return KILN_MAKE_STATUS(
        KILN_STATUS_DATA_LOSS,
        "artifact is %llu bytes but its header (offset 24) says %llu: "
        "truncated or padded",
        static_cast<unsigned long long>(a->size),
        static_cast<unsigned long long>(header.file_size));
  if (!AllZero(header.reserved, sizeof(header.reserved)))
    return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                            "reserved header bytes (offset 32) are not zero");
  if (header.section_count > KILN_ARTIFACT_MAX_SECTIONS)
    return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                            "section_count (offset 12) is %u, over the limit "
                            "of %u",
                            header.section_count, KILN_ARTIFACT_MAX_SECTIONS);
  uint64_t table = header.section_table_offset;
  uint64_t table_size =
      uint64_t{header.section_count} * sizeof(kiln_artifact_section_v1_t);
  if (table % 8 || table < sizeof(header) || table > a->size ||
      table_size > a->size - table)
    return KILN_MAKE_STATUS(
        KILN_STATUS_DATA_LOSS,
        "section table [%llu, +%llu) (offset 16) is misaligned or outside the "
        "%llu-byte file",
        static_cast<unsigned long long>(table),
        static_cast<unsigned long long>(table_size),
        static_cast<unsigned long long>(a->size));

  a->sections =
      new (std::nothrow) kiln_artifact_section_v1_t[header.section_count + 1];
  if (!a->sections)
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                            "out of memory reading the section table");
  std::memcpy(a->sections, a->data + table, table_size);
  for (uint32_t i = 0; i < header.section_count; ++i) {
    const kiln_artifact_section_v1_t& s = a->sections[i];
    uint64_t entry = table + uint64_t{i} * sizeof(s);
    if (s.reserved != 0)
      return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                              "section %u (entry at offset %llu): reserved "
                              "field is not zero",
                              i, static_cast<unsigned long long>(entry));
    if (s.alignment_log2 > KILN_ARTIFACT_MAX_ALIGNMENT_LOG2 ||
        s.offset % (uint64_t{1} << s.alignment_log2))
      return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                              "section %u (entry at offset %llu): offset %llu "
                              "is not aligned to 2^%u",
                              i, static_cast<unsigned long long>(entry),
                              static_cast<unsigned long long>(s.offset),
                              s.alignment_log2);
    if (s.offset < sizeof(header) || s.offset > a->size ||
        s.size > a->size - s.offset)
      return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                              "section %u (entry at offset %llu): [%llu, "
                              "+%llu) lies outside the file or over the header",
                              i, static_cast<unsigned long long>(entry),
                              static_cast<unsigned long long>(s.offset),
                              static_cast<unsigned long long>(s.size));
    // No section may overlap the table or an earlier section.
    auto overlaps = [&](uint64_t begin, uint64_t size) {
      return s.size && size && s.offset < begin + size &&
             begin < s.offset + s.size;
    };
    if (overlaps(table, table_size))
      return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                              "section %u overlaps the section table", i);
    for (uint32_t j = 0; j < i; ++j)
      if (overlaps(a->sections[j].offset, a->sections[j].size))
        return KILN_MAKE_STATUS(KILN_STATUS_DATA_LOSS,
                                "section %u overlaps section %u", i, j);
  }
  a->section_count = header.section_count;
  a->version = (uint32_t{header.version_major} << 16) | header.version_minor;
  return nullptr;
}

kiln_status_t Finish(kiln_artifact_s* artifact, kiln_artifact_t* out) {
  kiln_status_t status = Parse(artifact);
  if (status) {
    Destroy(artifact);
    return status;
  }
  *out = artifact;
  return nullptr;
}

void FillInfo(const kiln_artifact_s* a, uint32_t index,
              kiln_section_info_t* out) {
  const kiln_artifact_section_v1_t& s = a->sections[index];
  out->kind = s.kind;
  out->alignment = 1u << s.alignment_log2;
  out->offset = s.offset;
  out->size = s.size;
  out->data = a->data + s.offset;
}

}  // namespace

extern "C" {

kiln_status_t kiln_artifact_open_memory(const void* data, size_t size,
                                        kiln_artifact_t* out_artifact) {
  if (out_artifact) *out_artifact = nullptr;
  if (!out_artifact || (!data && size))
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_artifact_open_memory: NULL argument");
  auto* artifact = new (std::nothrow) kiln_artifact_s;
  if (!artifact)
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  artifact->data = static_cast<const uint8_t*>(data);
  artifact->size = size;
  return Finish(artifact, out_artifact);
}

kiln_status_t kiln_artifact_open_file(const char* path,
                                      kiln_artifact_t* out_artifact) {
  if (out_artifact) *out_artifact = nullptr;
  if (!path || !out_artifact)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_artifact_open_file: NULL argument");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return KILN_MAKE_STATUS(err == ENOENT   ? KILN_STATUS_NOT_FOUND
                            : err == EACCES ? KILN_STATUS_PERMISSION_DENIED
                                            : KILN_STATUS_UNAVAILABLE,
                            "cannot open artifact '%s': %s", path,
                            std::strerror(err));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "artifact '%s' is not a regular file", path);
  }
  auto* artifact = new (std::nothrow) kiln_artifact_s;
  if (!artifact) {
    close(fd);
    return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  }
  artifact->size = static_cast<uint64_t>(st.st_size);
  if (artifact->size) {
    void* mapping =
        mmap(nullptr, artifact->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      int err = errno;
      close(fd);
      delete artifact;
      return KILN_MAKE_STATUS(KILN_STATUS_RESOURCE_EXHAUSTED,
                              "cannot map artifact '%s': %s", path,
                              std::strerror(err));
    }
    artifact->mapping = mapping;
    artifact->data = static_cast<const uint8_t*>(mapping);
  }
  close(fd);  // the mapping keeps the file alive
  kiln_status_t status = Finish(artifact, out_artifact);
  if (status) {
    // Say which file was bad; the reason stays as it was.
    kiln_status_t named = KILN_MAKE_STATUS(
        kiln_status_code(status), "%s: %s", path, kiln_status_message(status));
    kiln_status_free(status);
    return named;
  }
  return nullptr;
}

void kiln_artifact_release(kiln_artifact_t artifact) { Destroy(artifact); }

uint32_t kiln_artifact_format_version(kiln_artifact_t artifact) {
  return artifact ? artifact->version : 0;
}

size_t kiln_artifact_section_count(kiln_artifact_t artifact) {
  return artifact ? artifact->section_count : 0;
}

kiln_status_t kiln_artifact_section(kiln_artifact_t artifact, size_t index,
                                    kiln_section_info_t* out_info) {
  if (out_info) std::memset(out_info, 0, sizeof(*out_info));
  if (!artifact || !out_info)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_artifact_section: NULL argument");
  if (index >= artifact->section_count)
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE,
                            "section index %zu, but the artifact has %u",
                            index, artifact->section_count);
  FillInfo(artifact, static_cast<uint32_t>(index), out_info);
  return nullptr;
}

kiln_status_t kiln_artifact_find_section(kiln_artifact_t artifact,
                                         uint32_t kind,
                                         kiln_section_info_t* out_info) {
  if (out_info) std::memset(out_info, 0, sizeof(*out_info));
  if (!artifact || !out_info)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_artifact_find_section: NULL argument");
  for (uint32_t i = 0; i < artifact->section_count; ++i) {
    if (artifact->sections[i].kind == kind) {
      FillInfo(artifact, i, out_info);
      return nullptr;
    }
  }
  return KILN_MAKE_STATUS(KILN_STATUS_NOT_FOUND,
                          "the artifact has no section of kind %u", kind);
}

}  // extern "C"
