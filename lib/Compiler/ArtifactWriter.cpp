//===- ArtifactWriter.cpp - writes .kiln artifacts ------------------------===//

#include "kiln/Compiler/ArtifactWriter.h"

#include "kiln/runtime/artifact_format.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <cstring>

using namespace mlir::kiln;

llvm::Error ArtifactWriter::addSection(kiln_section_kind_t kind,
                                       std::string bytes,
                                       unsigned alignLog2) {
  if (alignLog2 > KILN_ARTIFACT_MAX_ALIGNMENT_LOG2)
    return llvm::createStringError(
        llvm::formatv("section alignment 2^{0} exceeds the format's 2^{1}",
                      alignLog2, KILN_ARTIFACT_MAX_ALIGNMENT_LOG2)
            .str());
  if (sections.size() >= KILN_ARTIFACT_MAX_SECTIONS)
    return llvm::createStringError("too many sections");
  sections.push_back({kind, std::move(bytes), alignLog2});
  return llvm::Error::success();
}

namespace {
/// Lays the artifact out and hands it to `emit` in order: header, sections
/// with their padding, table.
template <typename Emit>
void layOut(const std::vector<ArtifactWriter::Section> &sections, Emit emit) {
  uint64_t size = sizeof(kiln_artifact_header_v1_t);
  std::vector<kiln_artifact_section_v1_t> table;
  std::vector<uint64_t> padding;
  auto alignUp = [](uint64_t x, uint64_t a) { return (x + a - 1) / a * a; };
  for (const auto &s : sections) {
    uint64_t at = alignUp(size, uint64_t{1} << s.alignLog2);
    padding.push_back(at - size);
    kiln_artifact_section_v1_t entry{};
    entry.kind = s.kind;
    entry.alignment_log2 = s.alignLog2;
    entry.offset = at;
    entry.size = s.bytes.size();
    table.push_back(entry);
    size = at + s.bytes.size();
  }
  uint64_t tableAt = alignUp(size, 8);
  kiln_artifact_header_v1_t header{};
  std::memcpy(header.magic, KILN_ARTIFACT_MAGIC, 4);
  header.version_major = KILN_ARTIFACT_VERSION_MAJOR;
  header.version_minor = KILN_ARTIFACT_VERSION_MINOR;
  header.header_size = sizeof(header);
  header.section_count = table.size();
  header.section_table_offset = tableAt;
  header.file_size = tableAt + table.size() * sizeof(kiln_artifact_section_v1_t);
  emit(llvm::StringRef(reinterpret_cast<const char *>(&header), sizeof(header)));
  for (size_t i = 0; i < sections.size(); ++i) {
    emit(llvm::StringRef(std::string(padding[i], '\0')));
    emit(llvm::StringRef(sections[i].bytes));
  }
  emit(llvm::StringRef(std::string(tableAt - size, '\0')));
  emit(llvm::StringRef(reinterpret_cast<const char *>(table.data()),
                       table.size() * sizeof(kiln_artifact_section_v1_t)));
}
} // namespace

std::string ArtifactWriter::serialize() const {
  std::string out;
  layOut(sections, [&](llvm::StringRef bytes) { out += bytes; });
  return out;
}

llvm::Expected<uint64_t> ArtifactWriter::writeFile(llvm::StringRef path) const {
  llvm::SmallString<256> model(path);
  llvm::sys::path::remove_filename(model);
  if (model.empty())
    model = ".";
  llvm::sys::path::append(model, llvm::sys::path::filename(path) +
                                     ".tmp-%%%%%%");
  int fd;
  llvm::SmallString<256> tmp;
  if (std::error_code ec = llvm::sys::fs::createUniqueFile(model, fd, tmp))
    return llvm::createStringError(ec, "cannot create a file next to '" +
                                           path + "': " + ec.message());
  uint64_t written = 0;
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    layOut(sections, [&](llvm::StringRef bytes) {
      os << bytes;
      written += bytes.size();
    });
    os.close();
    if (os.has_error()) {
      std::error_code ec = os.error();
      os.clear_error();
      llvm::sys::fs::remove(tmp);
      return llvm::createStringError(ec, "cannot write '" + path +
                                             "': " + ec.message());
    }
  }
  if (std::error_code ec = llvm::sys::fs::rename(tmp, path)) {
    llvm::sys::fs::remove(tmp);
    return llvm::createStringError(ec, "cannot write '" + path +
                                           "': " + ec.message());
  }
  return written;
}
