// Tests of the version queries.
#include <string>

#include "gtest/gtest.h"
#include "kiln/runtime/api.h"

namespace {

TEST(Version, MatchesTheProject) {
  // KILN_RUNTIME_EXPECTED_VERSION is the CMake project's version.
  EXPECT_STREQ(kiln_runtime_version_string(), KILN_RUNTIME_EXPECTED_VERSION);
}

TEST(Version, AbiMatchesTheHeader) {
  EXPECT_EQ(kiln_runtime_abi_version(), KILN_RUNTIME_ABI_VERSION);
  EXPECT_EQ(kiln_runtime_abi_version(), 2u);
}

}  // namespace
