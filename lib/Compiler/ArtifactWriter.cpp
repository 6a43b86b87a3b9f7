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
                                       llvm::StringRef bytes,
                                       unsigned alignLog2) {
  if (alignLog2 > KILN_ARTIFACT_MAX_ALIGNMENT_LOG2)
    return llvm::createStringError(
        llvm::formatv("section alignment 2^{0} exceeds the format's 2^{1}",
                      alignLog2, KILN_ARTIFACT_MAX_ALIGNMENT_LOG2)
            .str());
  if (sections.size() >= KILN_ARTIFACT_MAX_SECTIONS)
    return llvm::createStringError("too many sections");
  sections.push_back({kind, bytes.str(), alignLog2});
  return llvm::Error::success();
}

std::string ArtifactWriter::serialize() const {
  std::string out(sizeof(kiln_artifact_header_v1_t), '\0');
  auto padTo = [&](uint64_t alignment) {
    out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
  };
  std::vector<kiln_artifact_section_v1_t> table;
  for (const Section &s : sections) {
    padTo(uint64_t{1} << s.alignLog2);
    kiln_artifact_section_v1_t entry{};
    entry.kind = s.kind;
    entry.alignment_log2 = s.alignLog2;
    entry.offset = out.size();
    entry.size = s.bytes.size();
    table.push_back(entry);
    out += s.bytes;
  }
  padTo(8);
  kiln_artifact_header_v1_t header{};
  std::memcpy(header.magic, KILN_ARTIFACT_MAGIC, 4);
  header.version_major = KILN_ARTIFACT_VERSION_MAJOR;
  header.version_minor = KILN_ARTIFACT_VERSION_MINOR;
  header.header_size = sizeof(header);
  header.section_count = table.size();
  header.section_table_offset = out.size();
  out.append(reinterpret_cast<const char *>(table.data()),
             table.size() * sizeof(kiln_artifact_section_v1_t));
  header.file_size = out.size();
  std::memcpy(out.data(), &header, sizeof(header));
  return out;
}

llvm::Error ArtifactWriter::writeFile(llvm::StringRef path) const {
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
  {
    llvm::raw_fd_ostream os(fd, /*shouldClose=*/true);
    os << serialize();
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
  return llvm::Error::success();
}
