//===- ArtifactWriterTest.cpp - compiler writer <-> runtime reader --------===//

#include "kiln/Compiler/ArtifactWriter.h"

#include "kiln/runtime/api.hpp"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "gtest/gtest.h"

#include <random>

using namespace mlir::kiln;

namespace {

std::string randomBytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char &c : s)
    c = static_cast<char>(gen());
  return s;
}

TEST(ArtifactWriter, RoundTripsThroughTheRuntimeReader) {
  ArtifactWriter writer;
  std::string manifest = R"({"model": "tiny", "layers": 2})";
  std::string weights = randomBytes(10007, 7);
  std::string kernels = randomBytes(333, 8);
  ASSERT_FALSE(llvm::errorToBool(
      writer.addSection(KILN_SECTION_MANIFEST, manifest, 3)));
  ASSERT_FALSE(llvm::errorToBool(
      writer.addSection(KILN_SECTION_WEIGHTS, weights, 16)));
  ASSERT_FALSE(llvm::errorToBool(
      writer.addSection(KILN_SECTION_KERNELS, kernels, 7)));
  std::string bytes = writer.serialize();

  kiln_artifact_t artifact = nullptr;
  kiln::Status status(
      kiln_artifact_open_memory(bytes.data(), bytes.size(), &artifact));
  ASSERT_TRUE(status.ok()) << status.ToString();
  ASSERT_EQ(kiln_artifact_section_count(artifact), 3u);
  struct Expect {
    kiln_section_kind_t kind;
    const std::string &bytes;
    uint32_t alignment;
  } expected[] = {{KILN_SECTION_MANIFEST, manifest, 8},
                  {KILN_SECTION_WEIGHTS, weights, 65536},
                  {KILN_SECTION_KERNELS, kernels, 128}};
  for (const Expect &e : expected) {
    kiln_section_info_t info;
    ASSERT_EQ(kiln_artifact_find_section(artifact, e.kind, &info), nullptr);
    EXPECT_EQ(info.alignment, e.alignment);
    EXPECT_EQ(info.offset % e.alignment, 0u);
    EXPECT_EQ(std::string(static_cast<const char *>(info.data), info.size),
              e.bytes);
  }
  kiln_artifact_release(artifact);
}

TEST(ArtifactWriter, WritesFilesAtomically) {
  llvm::SmallString<128> dir;
  ASSERT_FALSE(llvm::sys::fs::createUniqueDirectory("kiln-writer", dir));
  llvm::SmallString<128> path(dir);
  path += "/model.kiln";
  ArtifactWriter writer;
  ASSERT_FALSE(llvm::errorToBool(
      writer.addSection(KILN_SECTION_MANIFEST, "{}", 3)));
  llvm::Expected<uint64_t> size = writer.writeFile(path);
  ASSERT_TRUE(bool(size)) << llvm::toString(size.takeError());
  // The streamed file is byte for byte what serialize() lays out.
  EXPECT_EQ(*size, writer.serialize().size());
  uint64_t onDisk = 0;
  ASSERT_FALSE(llvm::sys::fs::file_size(path, onDisk));
  EXPECT_EQ(onDisk, *size);
  kiln_artifact_t artifact = nullptr;
  kiln::Status status(kiln_artifact_open_file(path.c_str(), &artifact));
  ASSERT_TRUE(status.ok()) << status.ToString();
  kiln_artifact_release(artifact);
  // Only the artifact is left in the folder: no temporary files.
  std::error_code ec;
  int entries = 0;
  for (llvm::sys::fs::directory_iterator it(dir, ec), end; it != end && !ec;
       it.increment(ec))
    ++entries;
  EXPECT_EQ(entries, 1);
  // A destination that cannot be written is an error, not a partial file.
  llvm::Expected<uint64_t> bad = writer.writeFile("/nonexistent-dir/model.kiln");
  EXPECT_TRUE(llvm::errorToBool(bad.takeError()));
  llvm::sys::fs::remove_directories(dir);
}

TEST(ArtifactWriter, RejectsOversizedAlignment) {
  ArtifactWriter writer;
  llvm::Error err = writer.addSection(KILN_SECTION_WEIGHTS, "x", 17);
  EXPECT_EQ(llvm::toString(std::move(err)),
            "section alignment 2^17 exceeds the format's 2^16");
}

} // namespace
