// Tests of the artifact reader. Artifacts are encoded here byte by byte from
// the documented layout (docs/artifact-format.md), independently of the
// compiler's writer, so a drift in either side shows up.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kiln/runtime/api.h"
#include "kiln/runtime/api.hpp"

namespace {

void Put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

struct Section {
  uint32_t kind;
  uint32_t align_log2;
  std::string bytes;
};

// header (64) | sections, each aligned | table (32 bytes per entry)
std::vector<uint8_t> Encode(const std::vector<Section>& sections) {
  std::vector<uint8_t> b(64, 0);
  std::vector<uint64_t> offsets;
  for (const Section& s : sections) {
    uint64_t align = uint64_t{1} << s.align_log2;
    b.resize((b.size() + align - 1) / align * align, 0);
    offsets.push_back(b.size());
    b.insert(b.end(), s.bytes.begin(), s.bytes.end());
  }
  b.resize((b.size() + 7) / 8 * 8, 0);
  uint64_t table = b.size();
  b.resize(b.size() + 32 * sections.size(), 0);
  for (size_t i = 0; i < sections.size(); ++i) {
    size_t e = table + 32 * i;
    Put32(b, e, sections[i].kind);
    Put32(b, e + 4, sections[i].align_log2);
    Put64(b, e + 8, offsets[i]);
    Put64(b, e + 16, sections[i].bytes.size());
  }
  std::memcpy(b.data(), "KILN", 4);
  b[4] = 1;   // version major (u16 at 4)
  b[6] = 0;   // version minor (u16 at 6)
  Put32(b, 8, 64);
  Put32(b, 12, static_cast<uint32_t>(sections.size()));
  Put64(b, 16, table);
  Put64(b, 24, b.size());
  return b;
}

std::vector<uint8_t> Sample() {
  return Encode({{KILN_SECTION_MANIFEST, 3, "{\"model\": \"tiny\"}"},
                 {KILN_SECTION_WEIGHTS, 12, std::string(5000, '\x7f')}});
}

kiln::Status Open(const std::vector<uint8_t>& bytes, kiln_artifact_t* out) {
  return kiln::Status(kiln_artifact_open_memory(bytes.data(), bytes.size(), out));
}

TEST(Artifact, OpensAndListsSections) {
  std::vector<uint8_t> bytes = Sample();
  kiln_artifact_t artifact = nullptr;
  kiln::Status status = Open(bytes, &artifact);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(kiln_artifact_format_version(artifact), 1u << 16);
  ASSERT_EQ(kiln_artifact_section_count(artifact), 2u);

  kiln_section_info_t info;
  ASSERT_EQ(kiln_artifact_find_section(artifact, KILN_SECTION_WEIGHTS, &info),
            nullptr);
  EXPECT_EQ(info.kind, uint32_t{KILN_SECTION_WEIGHTS});
  EXPECT_EQ(info.alignment, 4096u);
  EXPECT_EQ(info.offset % 4096, 0u);
  EXPECT_EQ(info.size, 5000u);
  EXPECT_EQ(static_cast<const uint8_t*>(info.data) - bytes.data(),
            static_cast<ptrdiff_t>(info.offset));
  EXPECT_EQ(static_cast<const char*>(info.data)[4999], '\x7f');

  ASSERT_EQ(kiln_artifact_section(artifact, 0, &info), nullptr);
  EXPECT_EQ(std::string(static_cast<const char*>(info.data), info.size),
            "{\"model\": \"tiny\"}");

  kiln::Status missing(
      kiln_artifact_find_section(artifact, KILN_SECTION_KERNELS, &info));
  EXPECT_EQ(missing.code(), KILN_STATUS_NOT_FOUND);
  EXPECT_EQ(info.data, nullptr);
  kiln::Status past(kiln_artifact_section(artifact, 2, &info));
  EXPECT_EQ(past.code(), KILN_STATUS_OUT_OF_RANGE);
  kiln_artifact_release(artifact);
  kiln_artifact_release(nullptr);
}

// Each corruption is reported as DATA_LOSS naming what is wrong.
struct Corruption {
  const char* what;
  void (*apply)(std::vector<uint8_t>&);
  const char* message;
};

TEST(Artifact, RejectsCorruptFiles) {
  const Corruption cases[] = {
      {"magic", [](std::vector<uint8_t>& b) { b[0] = 'X'; }, "bad magic"},
      {"truncated", [](std::vector<uint8_t>& b) { b.resize(b.size() - 1); },
       "truncated or padded"},
      {"short", [](std::vector<uint8_t>& b) { b.resize(10); },
       "shorter than its 64-byte header"},
      {"header size", [](std::vector<uint8_t>& b) { Put32(b, 8, 63); },
       "header_size (offset 8) is 63"},
      {"reserved", [](std::vector<uint8_t>& b) { b[40] = 1; },
       "reserved header bytes"},
      {"count", [](std::vector<uint8_t>& b) { Put32(b, 12, 5000); },
       "over the limit"},
      {"table past end",
       [](std::vector<uint8_t>& b) { Put64(b, 16, b.size()); },
       "section table"},
      {"table misaligned", [](std::vector<uint8_t>& b) { Put64(b, 16, 68); },
       "misaligned"},
      {"section past end",
       [](std::vector<uint8_t>& b) {
         size_t table = b.size() - 64;
         Put64(b, table + 32 + 16, b.size());  // weights size
       },
       "lies outside the file"},
      {"section over header",
       [](std::vector<uint8_t>& b) {
         size_t table = b.size() - 64;
         Put64(b, table + 8, 0);
       },
       "over the header"},
      {"misaligned section",
       [](std::vector<uint8_t>& b) {
         size_t table = b.size() - 64;
         Put64(b, table + 32 + 8, 4096 + 8);
       },
       "not aligned to 2^12"},
      {"alignment too big",
       [](std::vector<uint8_t>& b) {
         size_t table = b.size() - 64;
         Put32(b, table + 4, 40);
       },
       "not aligned to 2^40"},
      {"overlap",
       [](std::vector<uint8_t>& b) {
         size_t table = b.size() - 64;
         Put64(b, table + 32 + 8, 64);  // weights start at the manifest
         Put32(b, table + 32 + 4, 3);
       },
       "overlaps section 0"},
      {"entry reserved",
       [](std::vector<uint8_t>& b) {
         size_t table = b.size() - 64;
         b[table + 24] = 9;
       },
       "reserved field is not zero"},
  };
  for (const Corruption& c : cases) {
    std::vector<uint8_t> bytes = Sample();
    c.apply(bytes);
    kiln_artifact_t artifact = reinterpret_cast<kiln_artifact_t>(0x1);
    kiln::Status status = Open(bytes, &artifact);
    EXPECT_EQ(status.code(), KILN_STATUS_DATA_LOSS) << c.what;
    EXPECT_NE(std::string(status.message()).find(c.message), std::string::npos)
        << c.what << ": " << status.message();
    EXPECT_EQ(artifact, nullptr) << c.what;
  }
}

TEST(Artifact, RejectsOtherMajorVersions) {
  std::vector<uint8_t> bytes = Sample();
  bytes[4] = 2;
  kiln_artifact_t artifact = nullptr;
  kiln::Status status = Open(bytes, &artifact);
  EXPECT_EQ(status.code(), KILN_STATUS_FAILED_PRECONDITION);
  EXPECT_NE(std::string(status.message()).find("version 2.0"),
            std::string::npos);
  // A newer minor version still opens.
  bytes[4] = 1;
  bytes[6] = 7;
  status = Open(bytes, &artifact);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(kiln_artifact_format_version(artifact), (1u << 16) | 7u);
  kiln_artifact_release(artifact);
}

TEST(Artifact, OpensFilesByMapping) {
  std::vector<uint8_t> bytes = Sample();
  char path[] = "/tmp/kiln-artifact-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, bytes.data(), bytes.size()),
            static_cast<ssize_t>(bytes.size()));
  close(fd);
  kiln_artifact_t artifact = nullptr;
  kiln::Status status(kiln_artifact_open_file(path, &artifact));
  ASSERT_TRUE(status.ok()) << status.ToString();
  kiln_section_info_t info;
  ASSERT_EQ(kiln_artifact_find_section(artifact, KILN_SECTION_MANIFEST, &info),
            nullptr);
  EXPECT_EQ(std::string(static_cast<const char*>(info.data), info.size),
            "{\"model\": \"tiny\"}");
  kiln_artifact_release(artifact);

  // A corrupt file names itself in the message.
  bytes[0] = 'Z';
  FILE* f = std::fopen(path, "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  status = kiln::Status(kiln_artifact_open_file(path, &artifact));
  EXPECT_EQ(status.code(), KILN_STATUS_DATA_LOSS);
  EXPECT_NE(std::string(status.message()).find(path), std::string::npos);
  std::remove(path);

  status = kiln::Status(kiln_artifact_open_file(path, &artifact));
  EXPECT_EQ(status.code(), KILN_STATUS_NOT_FOUND);
  status = kiln::Status(kiln_artifact_open_file(nullptr, &artifact));
  EXPECT_EQ(status.code(), KILN_STATUS_INVALID_ARGUMENT);
}

}  // namespace
