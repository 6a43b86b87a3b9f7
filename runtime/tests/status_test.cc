// Tests of the C API's status objects.
#include <string>

#include "gtest/gtest.h"
#include "kiln/runtime/api.h"
#include "kiln/runtime/api.hpp"

namespace {

TEST(Status, OkIsNull) {
  EXPECT_EQ(KILN_MAKE_STATUS(KILN_STATUS_OK, "ignored"), nullptr);
  EXPECT_EQ(kiln_status_code(nullptr), KILN_STATUS_OK);
  EXPECT_STREQ(kiln_status_message(nullptr), "");
  const char* file = "x";
  int line = 7;
  kiln_status_source_location(nullptr, &file, &line);
  EXPECT_STREQ(file, "");
  EXPECT_EQ(line, 0);
  kiln_status_free(nullptr);  // no-op
}

TEST(Status, CarriesCodeMessageAndLocation) {
  kiln_status_t s = kiln_status_allocate(KILN_STATUS_DATA_LOSS, "artifact.cc",
                                         42, "section %d at offset %llu", 3,
                                         4096ULL);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_DATA_LOSS);
  EXPECT_STREQ(kiln_status_message(s), "section 3 at offset 4096");
  const char* file = nullptr;
  int line = 0;
  kiln_status_source_location(s, &file, &line);
  EXPECT_STREQ(file, "artifact.cc");
  EXPECT_EQ(line, 42);
  char buffer[128];
  size_t length = 0;
  kiln_status_format(s, buffer, sizeof(buffer), &length);
  EXPECT_STREQ(buffer, "DATA_LOSS: section 3 at offset 4096 [artifact.cc:42]");
  EXPECT_EQ(length, std::string(buffer).size());
  kiln_status_free(s);
}

TEST(Status, FormatTruncatesLikeSnprintf) {
  kiln_status_t s =
      kiln_status_allocate(KILN_STATUS_NOT_FOUND, "", 0, "weight %s", "w0");
  char buffer[8];
  size_t length = 0;
  kiln_status_format(s, buffer, sizeof(buffer), &length);
  EXPECT_STREQ(buffer, "NOT_FOU");
  EXPECT_EQ(length, std::string("NOT_FOUND: weight w0").size());
  kiln_status_format(s, nullptr, 0, &length);  // size query only
  EXPECT_EQ(length, 20u);
  kiln_status_free(s);
}

TEST(Status, EveryCodeHasAName) {
  const char* names[] = {"OK",
                         "CANCELLED",
                         "UNKNOWN",
                         "INVALID_ARGUMENT",
                         "DEADLINE_EXCEEDED",
                         "NOT_FOUND",
                         "ALREADY_EXISTS",
                         "PERMISSION_DENIED",
                         "RESOURCE_EXHAUSTED",
                         "FAILED_PRECONDITION",
                         "ABORTED",
                         "OUT_OF_RANGE",
                         "UNIMPLEMENTED",
                         "INTERNAL",
                         "UNAVAILABLE",
                         "DATA_LOSS"};
  for (int code = 0; code <= KILN_STATUS_DATA_LOSS; ++code)
    EXPECT_STREQ(kiln_status_code_string(static_cast<kiln_status_code_t>(code)),
                 names[code]);
  EXPECT_STREQ(kiln_status_code_string(static_cast<kiln_status_code_t>(99)),
               "UNKNOWN_CODE");
}

TEST(Status, CppWrapperOwnsAndFormats) {
  kiln::Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.ToString(), "OK");
  kiln::Status bad(KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT, "bad %s", "x"));
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(std::string(bad.message()), "bad x");
  EXPECT_EQ(bad.ToString().rfind("INVALID_ARGUMENT: bad x [", 0), 0u);
  kiln::Status moved = std::move(bad);
  EXPECT_TRUE(bad.ok());
  EXPECT_FALSE(moved.ok());
}

TEST(Version, MatchesProject) {
  EXPECT_STREQ(kiln_runtime_version_string(), "0.1.0");
  EXPECT_EQ(kiln_runtime_abi_version(), 1u);
}

}  // namespace
