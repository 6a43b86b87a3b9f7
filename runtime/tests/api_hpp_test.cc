// Tests of the header-only C++ wrapper (api.hpp).
#include <string>
#include <type_traits>
#include <utility>

#include "gtest/gtest.h"
#include "kiln/runtime/api.hpp"

namespace {

static_assert(!std::is_copy_constructible_v<kiln::Status>,
              "a Status owns its C status");
static_assert(std::is_nothrow_move_constructible_v<kiln::Status>);
static_assert(std::is_nothrow_move_assignable_v<kiln::Status>);

TEST(StatusWrapper, DefaultIsOk) {
  kiln::Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.code(), KILN_STATUS_OK);
  EXPECT_STREQ(ok.message(), "");
  EXPECT_EQ(ok.ToString(), "OK");
  EXPECT_EQ(ok.get(), nullptr);
}

TEST(StatusWrapper, WrapsAnError) {
  kiln::Status bad(kiln_status_allocate(KILN_STATUS_INVALID_ARGUMENT, "x.cc", 5,
                                        "bad %s", "rank"));
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_STREQ(bad.message(), "bad rank");
  EXPECT_EQ(bad.ToString(), "INVALID_ARGUMENT: bad rank [x.cc:5]");
}

TEST(StatusWrapper, ToStringIsNotTruncated) {
  // Lengths around small-string and power-of-two boundaries.
  for (size_t size : {0u, 1u, 14u, 15u, 16u, 255u, 256u, 4097u}) {
    std::string message(size, 'q');
    kiln::Status s(kiln_status_allocate(KILN_STATUS_INTERNAL, "", 0, "%s",
                                        message.c_str()));
    std::string expected = size ? "INTERNAL: " + message : "INTERNAL";
    EXPECT_EQ(s.ToString(), expected) << size;
  }
}

TEST(StatusWrapper, MovesTransferOwnership) {
  kiln::Status a(kiln_status_allocate(KILN_STATUS_NOT_FOUND, "", 0, "a"));
  kiln_status_t raw = a.get();
  kiln::Status b = std::move(a);
  EXPECT_TRUE(a.ok());  // NOLINT(bugprone-use-after-move): moved-from is OK
  EXPECT_EQ(b.get(), raw);

  kiln::Status c(kiln_status_allocate(KILN_STATUS_ABORTED, "", 0, "c"));
  c = std::move(b);  // frees c's old status
  EXPECT_EQ(c.get(), raw);
  EXPECT_STREQ(c.message(), "a");
  c = kiln::Status();
  EXPECT_TRUE(c.ok());
}

TEST(StatusWrapper, ReleaseGivesUpOwnership) {
  kiln::Status s(kiln_status_allocate(KILN_STATUS_UNAVAILABLE, "", 0, "gpu"));
  kiln_status_t raw = s.release();
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(kiln_status_code(raw), KILN_STATUS_UNAVAILABLE);
  kiln_status_free(raw);
}

}  // namespace
