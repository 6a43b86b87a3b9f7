// Tests of element-type names, widths and storage sizes.
#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "kiln/runtime/api.h"

namespace {

uint64_t Size(kiln_dtype_t dtype, std::initializer_list<int64_t> shape) {
  uint64_t bytes = 0;
  kiln_status_t s =
      kiln_dtype_storage_size(dtype, shape.begin(), shape.size(), &bytes);
  EXPECT_EQ(s, nullptr) << kiln_status_message(s);
  kiln_status_free(s);
  return bytes;
}

TEST(DType, NamesRoundTrip) {
  for (int code = KILN_DTYPE_F32; code <= KILN_DTYPE_U64; ++code) {
    auto dtype = static_cast<kiln_dtype_t>(code);
    kiln_dtype_t parsed = KILN_DTYPE_INVALID;
    kiln_status_t s = kiln_dtype_from_name(kiln_dtype_name(dtype), &parsed);
    ASSERT_EQ(s, nullptr) << kiln_dtype_name(dtype);
    EXPECT_EQ(parsed, dtype);
  }
  EXPECT_STREQ(kiln_dtype_name(KILN_DTYPE_F8E4M3FN), "f8E4M3FN");
  EXPECT_STREQ(kiln_dtype_name(KILN_DTYPE_U4), "ui4");
  EXPECT_STREQ(kiln_dtype_name(static_cast<kiln_dtype_t>(42)), "invalid");
}

TEST(DType, UnknownNameIsNotFound) {
  kiln_dtype_t dtype = KILN_DTYPE_F32;
  kiln_status_t s = kiln_dtype_from_name("float128", &dtype);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_NOT_FOUND);
  EXPECT_NE(std::string(kiln_status_message(s)).find("'float128'"),
            std::string::npos);
  EXPECT_EQ(dtype, KILN_DTYPE_F32);  // untouched on failure
  kiln_status_free(s);
  s = kiln_dtype_from_name(nullptr, &dtype);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
  kiln_status_free(s);
}

TEST(DType, BitWidths) {
  EXPECT_EQ(kiln_dtype_bit_width(KILN_DTYPE_F32), 32u);
  EXPECT_EQ(kiln_dtype_bit_width(KILN_DTYPE_BF16), 16u);
  EXPECT_EQ(kiln_dtype_bit_width(KILN_DTYPE_F8E5M2), 8u);
  EXPECT_EQ(kiln_dtype_bit_width(KILN_DTYPE_I4), 4u);
  EXPECT_EQ(kiln_dtype_bit_width(KILN_DTYPE_I1), 8u);
  EXPECT_EQ(kiln_dtype_bit_width(KILN_DTYPE_U64), 64u);
  EXPECT_EQ(kiln_dtype_bit_width(KILN_DTYPE_INVALID), 0u);
}

TEST(DType, StorageSizes) {
  EXPECT_EQ(Size(KILN_DTYPE_F32, {2, 3}), 24u);
  EXPECT_EQ(Size(KILN_DTYPE_BF16, {4096, 4096}), 33554432u);
  EXPECT_EQ(Size(KILN_DTYPE_I4, {3, 5}), 9u);  // rows padded to 3 bytes
  EXPECT_EQ(Size(KILN_DTYPE_U4, {4, 8}), 16u);
  EXPECT_EQ(Size(KILN_DTYPE_I4, {7}), 4u);
  EXPECT_EQ(Size(KILN_DTYPE_F16, {}), 2u);  // scalar
  EXPECT_EQ(Size(KILN_DTYPE_I8, {0, 9}), 0u);
  EXPECT_EQ(Size(KILN_DTYPE_I1, {10}), 10u);
}

TEST(DType, StorageSizeErrors) {
  uint64_t bytes = 123;
  int64_t negative[] = {2, -1};
  kiln_status_t s = kiln_dtype_storage_size(KILN_DTYPE_F32, negative, 2, &bytes);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kiln_status_message(s)).find("dimension 1"),
            std::string::npos);
  kiln_status_free(s);
  int64_t huge[] = {INT64_MAX, INT64_MAX, 4};
  s = kiln_dtype_storage_size(KILN_DTYPE_F32, huge, 3, &bytes);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_OUT_OF_RANGE);
  kiln_status_free(s);
  int64_t one[] = {1};
  s = kiln_dtype_storage_size(KILN_DTYPE_INVALID, one, 1, &bytes);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
  kiln_status_free(s);
  EXPECT_EQ(bytes, 123u);  // untouched on failure
}

}  // namespace
