//===- ArtifactWriter.h - writes .kiln artifacts -------------------*- C++ -*-===//
//
// Lays sections out as runtime/include/kiln/runtime/artifact_format.h says
// and writes the file atomically, so a failed compile never leaves a partial
// artifact behind.
//
//===----------------------------------------------------------------------===//

#ifndef KILN_COMPILER_ARTIFACTWRITER_H
#define KILN_COMPILER_ARTIFACTWRITER_H

#include "kiln/runtime/api.h"

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace mlir::kiln {

class ArtifactWriter {
public:
  /// Adds a section whose bytes start at a multiple of 2^alignLog2. The
  /// writer takes the bytes over (pass a large weights blob with std::move:
  /// it is never copied).
  llvm::Error addSection(kiln_section_kind_t kind, std::string bytes,
                         unsigned alignLog2);

  /// The whole artifact in memory (for tests and small artifacts).
  std::string serialize() const;

  /// Writes the artifact to `path`, streaming the sections (no second copy
  /// of the weights), through a temporary file in the same folder that is
  /// renamed into place only once complete. Returns the file's size.
  llvm::Expected<uint64_t> writeFile(llvm::StringRef path) const;

  struct Section {
    kiln_section_kind_t kind;
    std::string bytes;
    unsigned alignLog2;
  };

private:
  std::vector<Section> sections;
};

} // namespace mlir::kiln

#endif // KILN_COMPILER_ARTIFACTWRITER_H
