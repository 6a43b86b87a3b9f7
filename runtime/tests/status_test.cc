// Tests of the C API's status objects: creation, queries, formatting, release.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kiln/runtime/api.h"

#if defined(__linux__)
#include <sys/resource.h>
#include <unistd.h>
#endif

namespace {

// kiln_status_format's text, through a buffer comfortably larger than it.
std::string Format(kiln_status_t status) {
  char buffer[512];
  size_t length = 0;
  kiln_status_format(status, buffer, sizeof(buffer), &length);
  EXPECT_EQ(length, std::strlen(buffer));
  return buffer;
}

TEST(Status, OkCodeGivesNull) {
  EXPECT_EQ(KILN_MAKE_STATUS(KILN_STATUS_OK, "ignored %d", 1), nullptr);
  EXPECT_EQ(kiln_status_allocate(KILN_STATUS_OK, "f.cc", 1, "x"), nullptr);
}

TEST(Status, NullIsOk) {
  EXPECT_EQ(kiln_status_code(nullptr), KILN_STATUS_OK);
  EXPECT_STREQ(kiln_status_message(nullptr), "");
  const char* file = "unchanged";
  int line = 7;
  kiln_status_source_location(nullptr, &file, &line);
  EXPECT_STREQ(file, "");
  EXPECT_EQ(line, 0);
  kiln_status_source_location(nullptr, nullptr, nullptr);
  EXPECT_EQ(Format(nullptr), "OK");
  kiln_status_free(nullptr);
}

TEST(Status, CarriesCodeMessageAndLocation) {
  kiln_status_t s =
      kiln_status_allocate(KILN_STATUS_DATA_LOSS, "artifact.cc", 42,
                           "section %d at offset %llu", 3, 4096ULL);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_DATA_LOSS);
  EXPECT_STREQ(kiln_status_message(s), "section 3 at offset 4096");
  const char* file = nullptr;
  int line = 0;
  kiln_status_source_location(s, &file, &line);
  EXPECT_STREQ(file, "artifact.cc");
  EXPECT_EQ(line, 42);
  // Each out pointer is optional.
  line = 0;
  kiln_status_source_location(s, nullptr, &line);
  EXPECT_EQ(line, 42);
  file = nullptr;
  kiln_status_source_location(s, &file, nullptr);
  EXPECT_STREQ(file, "artifact.cc");
  EXPECT_EQ(Format(s), "DATA_LOSS: section 3 at offset 4096 [artifact.cc:42]");
  kiln_status_free(s);
}

TEST(Status, MacroRecordsCallersFileAndLine) {
  const int expected_line = __LINE__ + 1;
  kiln_status_t s = KILN_MAKE_STATUS(KILN_STATUS_NOT_FOUND, "no '%s'", "w0");
  const char* file = nullptr;
  int line = 0;
  kiln_status_source_location(s, &file, &line);
  EXPECT_STREQ(file, __FILE__);
  EXPECT_EQ(line, expected_line);
  EXPECT_EQ(Format(s), std::string("NOT_FOUND: no 'w0' [") + __FILE__ + ":" +
                           std::to_string(expected_line) + "]");
  kiln_status_free(s);
}

TEST(Status, CopiesFileAndMessage) {
  char file[] = "loader.cc";
  char argument[] = "tok_embeddings";
  kiln_status_t s = kiln_status_allocate(KILN_STATUS_NOT_FOUND, file, 9,
                                         "missing %s", argument);
  std::memset(file, 'X', sizeof(file) - 1);
  std::memset(argument, 'X', sizeof(argument) - 1);
  EXPECT_EQ(Format(s), "NOT_FOUND: missing tok_embeddings [loader.cc:9]");
  kiln_status_free(s);
}

TEST(Status, FormatLeavesOutEmptyParts) {
  kiln_status_t no_message =
      kiln_status_allocate(KILN_STATUS_ABORTED, "sched.cc", 3, "%s", "");
  EXPECT_STREQ(kiln_status_message(no_message), "");
  EXPECT_EQ(Format(no_message), "ABORTED [sched.cc:3]");
  kiln_status_free(no_message);

  kiln_status_t no_file =
      kiln_status_allocate(KILN_STATUS_UNAVAILABLE, nullptr, 12, "no driver");
  const char* file = nullptr;
  int line = 0;
  kiln_status_source_location(no_file, &file, &line);
  EXPECT_STREQ(file, "");
  EXPECT_EQ(line, 12);
  EXPECT_EQ(Format(no_file), "UNAVAILABLE: no driver");
  kiln_status_free(no_file);

  kiln_status_t bare =
      kiln_status_allocate(KILN_STATUS_CANCELLED, "", 0, "%s", "");
  EXPECT_EQ(Format(bare), "CANCELLED");
  kiln_status_free(bare);
}

TEST(Status, NullFormatGivesEmptyMessage) {
  // Through a variable: a literal NULL format would trip -Wformat.
  const char* format = nullptr;
  kiln_status_t s =
      kiln_status_allocate(KILN_STATUS_INTERNAL, "x.cc", 1, format);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INTERNAL);
  EXPECT_STREQ(kiln_status_message(s), "");
  kiln_status_free(s);
}

TEST(Status, UnformattableMessageKeepsTheFormat) {
  // In the "C" locale (tests never call setlocale) a non-ASCII wide string
  // cannot be converted, so vsnprintf fails with EILSEQ; the status keeps
  // the format string rather than losing the message.
  kiln_status_t s = kiln_status_allocate(KILN_STATUS_INTERNAL, "w.cc", 2,
                                         "bad name %ls", L"\u00e9t\u00e9");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INTERNAL);
  EXPECT_STREQ(kiln_status_message(s), "bad name %ls");
  kiln_status_free(s);
}

TEST(Status, FormatTruncatesLikeSnprintf) {
  kiln_status_t s =
      kiln_status_allocate(KILN_STATUS_NOT_FOUND, "w.cc", 7, "weight %s", "w0");
  const std::string full = "NOT_FOUND: weight w0 [w.cc:7]";
  // Every capacity from a size query to more than enough: the output is the
  // longest prefix that fits, NUL-terminated, and nothing past `capacity` is
  // written.
  for (size_t capacity = 0; capacity <= full.size() + 2; ++capacity) {
    char buffer[64];
    std::memset(buffer, '#', sizeof(buffer));
    size_t length = 0;
    kiln_status_format(s, buffer, capacity, &length);
    EXPECT_EQ(length, full.size()) << "capacity " << capacity;
    if (capacity > 0) {
      size_t kept = capacity - 1 < full.size() ? capacity - 1 : full.size();
      EXPECT_EQ(std::string(buffer), full.substr(0, kept))
          << "capacity " << capacity;
    }
    for (size_t i = capacity; i < sizeof(buffer); ++i) {
      ASSERT_EQ(buffer[i], '#')
          << "wrote byte " << i << " past capacity " << capacity;
    }
  }
  // A size query with no buffer, and a NULL buffer with a capacity, which is
  // treated as a size query too.
  size_t length = 0;
  kiln_status_format(s, nullptr, 0, &length);
  EXPECT_EQ(length, full.size());
  length = 0;
  kiln_status_format(s, nullptr, 100, &length);
  EXPECT_EQ(length, full.size());
  // The length is optional.
  char buffer[8];
  kiln_status_format(s, buffer, sizeof(buffer), nullptr);
  EXPECT_STREQ(buffer, "NOT_FOU");
  kiln_status_free(s);
}

TEST(Status, FormatsLongMessagesWhole) {
  std::string long_text(5000, 'm');
  kiln_status_t s = kiln_status_allocate(KILN_STATUS_INTERNAL, "f.cc", 1, "%s",
                                         long_text.c_str());
  EXPECT_EQ(std::string(kiln_status_message(s)), long_text);
  size_t length = 0;
  kiln_status_format(s, nullptr, 0, &length);
  std::string expected = "INTERNAL: " + long_text + " [f.cc:1]";
  ASSERT_EQ(length, expected.size());
  std::vector<char> buffer(length + 1);
  kiln_status_format(s, buffer.data(), buffer.size(), nullptr);
  EXPECT_EQ(std::string(buffer.data()), expected);
  kiln_status_free(s);
}

const char* const kCodeNames[] = {"OK",
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

TEST(Status, CodeValuesAreTheAbslOnes) {
  // The values are ABI; spell them out rather than trust the enum.
  EXPECT_EQ(KILN_STATUS_OK, 0);
  EXPECT_EQ(KILN_STATUS_CANCELLED, 1);
  EXPECT_EQ(KILN_STATUS_UNKNOWN, 2);
  EXPECT_EQ(KILN_STATUS_INVALID_ARGUMENT, 3);
  EXPECT_EQ(KILN_STATUS_DEADLINE_EXCEEDED, 4);
  EXPECT_EQ(KILN_STATUS_NOT_FOUND, 5);
  EXPECT_EQ(KILN_STATUS_ALREADY_EXISTS, 6);
  EXPECT_EQ(KILN_STATUS_PERMISSION_DENIED, 7);
  EXPECT_EQ(KILN_STATUS_RESOURCE_EXHAUSTED, 8);
  EXPECT_EQ(KILN_STATUS_FAILED_PRECONDITION, 9);
  EXPECT_EQ(KILN_STATUS_ABORTED, 10);
  EXPECT_EQ(KILN_STATUS_OUT_OF_RANGE, 11);
  EXPECT_EQ(KILN_STATUS_UNIMPLEMENTED, 12);
  EXPECT_EQ(KILN_STATUS_INTERNAL, 13);
  EXPECT_EQ(KILN_STATUS_UNAVAILABLE, 14);
  EXPECT_EQ(KILN_STATUS_DATA_LOSS, 15);
}

TEST(Status, EveryCodeHasItsName) {
  ASSERT_EQ(sizeof(kCodeNames) / sizeof(kCodeNames[0]),
            static_cast<size_t>(KILN_STATUS_DATA_LOSS) + 1);
  for (int value = KILN_STATUS_OK; value <= KILN_STATUS_DATA_LOSS; ++value) {
    auto code = static_cast<kiln_status_code_t>(value);
    EXPECT_STREQ(kiln_status_code_string(code), kCodeNames[value]);
  }
}

TEST(Status, EveryErrorCodeRoundTrips) {
  for (int value = KILN_STATUS_CANCELLED; value <= KILN_STATUS_DATA_LOSS;
       ++value) {
    auto code = static_cast<kiln_status_code_t>(value);
    kiln_status_t s =
        kiln_status_allocate(code, "c.cc", value, "code %d", value);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(kiln_status_code(s), code);
    EXPECT_EQ(Format(s), std::string(kCodeNames[value]) + ": code " +
                             std::to_string(value) +
                             " [c.cc:" + std::to_string(value) + "]");
    kiln_status_free(s);
  }
}

TEST(Status, OutOfEnumCodes) {
  EXPECT_STREQ(kiln_status_code_string(static_cast<kiln_status_code_t>(16)),
               "UNKNOWN_CODE");
  EXPECT_STREQ(kiln_status_code_string(static_cast<kiln_status_code_t>(-1)),
               "UNKNOWN_CODE");
  // A status never reports a code outside the enum.
  kiln_status_t s = kiln_status_allocate(static_cast<kiln_status_code_t>(99),
                                         "f.cc", 1, "odd code");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_UNKNOWN);
  EXPECT_EQ(Format(s), "UNKNOWN: odd code [f.cc:1]");
  kiln_status_free(s);
}

TEST(Status, ConcurrentUseSharesNoState) {
  constexpr int kThreads = 8;
  constexpr int kIterations = 2000;
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &failures] {
      for (int i = 0; i < kIterations; ++i) {
        kiln_status_t s = kiln_status_allocate(KILN_STATUS_ABORTED, "t.cc", t,
                                               "thread %d iteration %d", t, i);
        char expected[64];
        std::snprintf(expected, sizeof(expected),
                      "ABORTED: thread %d iteration %d [t.cc:%d]", t, i, t);
        char buffer[64];
        kiln_status_format(s, buffer, sizeof(buffer), nullptr);
        if (std::strcmp(buffer, expected) != 0) ++failures[t];
        kiln_status_free(s);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(failures[t], 0) << "thread " << t;
}

#if defined(__linux__)
// Allocation failure yields the static out-of-memory status. Run in a forked
// child whose address space is capped just above its current size, so that
// the message buffer of a 256 MiB message cannot be allocated.
void AllocateUnderMemoryCapAndExit() {
  long page_size = sysconf(_SC_PAGESIZE);
  unsigned long vm_pages = 0;
  FILE* statm = std::fopen("/proc/self/statm", "r");
  if (!statm || std::fscanf(statm, "%lu", &vm_pages) != 1) {
    std::fprintf(stderr, "cannot read /proc/self/statm\n");
    std::_Exit(2);
  }
  std::fclose(statm);
  struct rlimit original;
  getrlimit(RLIMIT_AS, &original);
  // Only the soft limit, so that it can be lifted again below.
  struct rlimit limit = original;
  limit.rlim_cur = static_cast<rlim_t>(vm_pages) * page_size + (64u << 20);
  if (setrlimit(RLIMIT_AS, &limit) != 0) {
    std::fprintf(stderr, "setrlimit failed\n");
    std::_Exit(2);
  }
  // vsnprintf sizes the padded message without allocating it; the status's
  // block then cannot be allocated.
  kiln_status_t s = kiln_status_allocate(KILN_STATUS_INTERNAL, "big.cc", 1,
                                         "%*s", 256 << 20, "");
  char text[128];
  kiln_status_format(s, text, sizeof(text), nullptr);
  const char* file = nullptr;
  int line = -1;
  kiln_status_source_location(s, &file, &line);
  bool ok = kiln_status_code(s) == KILN_STATUS_RESOURCE_EXHAUSTED &&
            std::strcmp(kiln_status_message(s), "out of memory") == 0 &&
            std::strcmp(text, "RESOURCE_EXHAUSTED: out of memory") == 0 &&
            std::strcmp(file, "") == 0 && line == 0;
  // Freeing the static status is allowed, any number of times.
  kiln_status_free(s);
  kiln_status_free(s);
  // Lift the cap and check the library still allocates normally.
  setrlimit(RLIMIT_AS, &original);
  kiln_status_t after =
      kiln_status_allocate(KILN_STATUS_INTERNAL, "f.cc", 1, "fine");
  ok = ok && after != s && std::strcmp(kiln_status_message(after), "fine") == 0;
  kiln_status_free(after);
  if (!ok) std::fprintf(stderr, "got: '%s'\n", text);
  std::_Exit(ok ? 0 : 1);
}

TEST(StatusDeathTest, OutOfMemoryGivesStaticStatus) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(AllocateUnderMemoryCapAndExit(), testing::ExitedWithCode(0), "");
}
#endif  // defined(__linux__)

}  // namespace
