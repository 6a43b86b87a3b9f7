// Tests of element types: codes, names, bit widths and storage sizes.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kiln/runtime/api.h"

namespace {

struct Expected {
  kiln_dtype_t dtype;
  int code;
  const char* name;
  uint32_t bits;
};

// Written out by hand: codes are artifact ABI and names are MLIR's spelling,
// so neither may change silently.
const Expected kExpected[] = {
    {KILN_DTYPE_F32, 1, "f32", 32},
    {KILN_DTYPE_F16, 2, "f16", 16},
    {KILN_DTYPE_BF16, 3, "bf16", 16},
    {KILN_DTYPE_F64, 4, "f64", 64},
    {KILN_DTYPE_F8E4M3FN, 5, "f8E4M3FN", 8},
    {KILN_DTYPE_F8E5M2, 6, "f8E5M2", 8},
    {KILN_DTYPE_I1, 7, "i1", 8},
    {KILN_DTYPE_I4, 8, "i4", 4},
    {KILN_DTYPE_U4, 9, "ui4", 4},
    {KILN_DTYPE_I8, 10, "i8", 8},
    {KILN_DTYPE_U8, 11, "ui8", 8},
    {KILN_DTYPE_I16, 12, "i16", 16},
    {KILN_DTYPE_U16, 13, "ui16", 16},
    {KILN_DTYPE_I32, 14, "i32", 32},
    {KILN_DTYPE_U32, 15, "ui32", 32},
    {KILN_DTYPE_I64, 16, "i64", 64},
    {KILN_DTYPE_U64, 17, "ui64", 64},
};

// The storage size of a valid shape; fails the test on an error status.
uint64_t Size(kiln_dtype_t dtype, std::initializer_list<int64_t> shape) {
  uint64_t bytes = 0xdeadbeef;
  kiln_status_t s =
      kiln_dtype_storage_size(dtype, shape.begin(), shape.size(), &bytes);
  EXPECT_EQ(s, nullptr) << kiln_status_message(s);
  kiln_status_free(s);
  return bytes;
}

// The status code of a storage-size query, checking that the result is reset
// to 0 on failure.
kiln_status_code_t SizeError(kiln_dtype_t dtype,
                             std::initializer_list<int64_t> shape,
                             std::string* message = nullptr) {
  uint64_t bytes = 0xdeadbeef;
  kiln_status_t s =
      kiln_dtype_storage_size(dtype, shape.begin(), shape.size(), &bytes);
  kiln_status_code_t code = kiln_status_code(s);
  if (s) {
    EXPECT_EQ(bytes, 0u);
  }
  if (message) *message = kiln_status_message(s);
  kiln_status_free(s);
  return code;
}

TEST(DType, CodesNamesAndWidths) {
  ASSERT_EQ(sizeof(kExpected) / sizeof(kExpected[0]), 17u);
  EXPECT_EQ(KILN_DTYPE_INVALID, 0);
  for (const Expected& e : kExpected) {
    EXPECT_EQ(static_cast<int>(e.dtype), e.code) << e.name;
    EXPECT_STREQ(kiln_dtype_name(e.dtype), e.name);
    EXPECT_EQ(kiln_dtype_bit_width(e.dtype), e.bits) << e.name;
  }
}

TEST(DType, NamesRoundTrip) {
  for (int code = KILN_DTYPE_INVALID + 1; code <= KILN_DTYPE_U64; ++code) {
    auto dtype = static_cast<kiln_dtype_t>(code);
    kiln_dtype_t parsed = KILN_DTYPE_INVALID;
    kiln_status_t s = kiln_dtype_from_name(kiln_dtype_name(dtype), &parsed);
    ASSERT_EQ(s, nullptr) << kiln_status_message(s);
    EXPECT_EQ(parsed, dtype) << kiln_dtype_name(dtype);
  }
}

TEST(DType, InvalidCodes) {
  for (int code : {0, KILN_DTYPE_U64 + 1, 255, -1}) {
    auto dtype = static_cast<kiln_dtype_t>(code);
    EXPECT_STREQ(kiln_dtype_name(dtype), "invalid") << code;
    EXPECT_EQ(kiln_dtype_bit_width(dtype), 0u) << code;
    std::string message;
    EXPECT_EQ(SizeError(dtype, {2}, &message), KILN_STATUS_INVALID_ARGUMENT);
    EXPECT_EQ(message, "invalid element type code " + std::to_string(code));
  }
}

TEST(DType, UnknownNameIsNotFound) {
  kiln_dtype_t dtype = KILN_DTYPE_F32;
  kiln_status_t s = kiln_dtype_from_name("float128", &dtype);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_NOT_FOUND);
  EXPECT_STREQ(kiln_status_message(s),
               "unknown element type 'float128'; expected one of: f32, f16, "
               "bf16, f64, f8E4M3FN, f8E5M2, i1, i4, ui4, i8, ui8, i16, ui16, "
               "i32, ui32, i64, ui64");
  EXPECT_EQ(dtype, KILN_DTYPE_INVALID);  // reset on failure
  kiln_status_free(s);
}

TEST(DType, NamesAreExactMlirSpellings) {
  // Case, aliases, whitespace and the "invalid" placeholder are all rejected.
  for (const char* name :
       {"F32", "f8e4m3fn", "u4", "uint8", "bool", "f32 ", "", "invalid"}) {
    kiln_dtype_t dtype = KILN_DTYPE_F32;
    kiln_status_t s = kiln_dtype_from_name(name, &dtype);
    EXPECT_EQ(kiln_status_code(s), KILN_STATUS_NOT_FOUND) << "'" << name << "'";
    EXPECT_NE(
        std::string(kiln_status_message(s)).find(std::string("'") + name + "'"),
        std::string::npos)
        << kiln_status_message(s);
    EXPECT_EQ(dtype, KILN_DTYPE_INVALID);
    kiln_status_free(s);
  }
}

TEST(DType, LongUnknownNameIsQuotedTruncated) {
  std::string name(100, 'x');
  kiln_dtype_t dtype = KILN_DTYPE_F32;
  kiln_status_t s = kiln_dtype_from_name(name.c_str(), &dtype);
  std::string message = kiln_status_message(s);
  EXPECT_EQ(message.find("'" + std::string(64, 'x') + "...'"),
            std::string("unknown element type ").size())
      << message;
  EXPECT_EQ(message.find(std::string(65, 'x')), std::string::npos);
  kiln_status_free(s);

  // Exactly 64 characters fit without an ellipsis.
  name.assign(64, 'y');
  s = kiln_dtype_from_name(name.c_str(), &dtype);
  message = kiln_status_message(s);
  EXPECT_NE(message.find("'" + name + "'"), std::string::npos) << message;
  kiln_status_free(s);
}

TEST(DType, FromNameNullArguments) {
  kiln_dtype_t dtype = KILN_DTYPE_F32;
  kiln_status_t s = kiln_dtype_from_name(nullptr, &dtype);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_STREQ(kiln_status_message(s), "kiln_dtype_from_name: name is NULL");
  EXPECT_EQ(dtype, KILN_DTYPE_INVALID);
  kiln_status_free(s);
  s = kiln_dtype_from_name("f32", nullptr);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_STREQ(kiln_status_message(s),
               "kiln_dtype_from_name: out_dtype is NULL");
  kiln_status_free(s);
}

TEST(DType, StorageSizes) {
  EXPECT_EQ(Size(KILN_DTYPE_F32, {2, 3}), 24u);
  EXPECT_EQ(Size(KILN_DTYPE_F64, {2, 3, 4}), 192u);
  EXPECT_EQ(Size(KILN_DTYPE_BF16, {4096, 4096}), 33554432u);
  EXPECT_EQ(Size(KILN_DTYPE_F8E4M3FN, {5}), 5u);
  EXPECT_EQ(Size(KILN_DTYPE_U64, {3}), 24u);
  EXPECT_EQ(Size(KILN_DTYPE_I1, {10}), 10u);  // one byte per bool
  EXPECT_EQ(Size(KILN_DTYPE_I1, {3, 3}), 9u);
}

TEST(DType, SubByteRowsArePackedAndPadded) {
  EXPECT_EQ(Size(KILN_DTYPE_I4, {3, 5}), 9u);  // 3 rows of ceil(5 / 2) bytes
  EXPECT_EQ(Size(KILN_DTYPE_U4, {4, 8}), 16u);
  EXPECT_EQ(Size(KILN_DTYPE_I4, {7}), 4u);
  EXPECT_EQ(Size(KILN_DTYPE_I4, {1}), 1u);
  EXPECT_EQ(Size(KILN_DTYPE_I4, {8}), 4u);
  EXPECT_EQ(Size(KILN_DTYPE_I4, {5, 1}), 5u);  // not ceil(5 / 2) = 3
  EXPECT_EQ(Size(KILN_DTYPE_U4, {2, 3, 3}), 12u);
  // Exhaustively against the rule, outer * ceil(inner / 2), for small shapes.
  for (int64_t outer = 0; outer <= 9; ++outer) {
    for (int64_t inner = 0; inner <= 9; ++inner) {
      uint64_t expected = static_cast<uint64_t>(outer * ((inner + 1) / 2));
      EXPECT_EQ(Size(KILN_DTYPE_U4, {outer, inner}), expected)
          << outer << "x" << inner;
    }
  }
}

TEST(DType, ScalarsAreOneElement) {
  EXPECT_EQ(Size(KILN_DTYPE_F16, {}), 2u);
  EXPECT_EQ(Size(KILN_DTYPE_F64, {}), 8u);
  EXPECT_EQ(Size(KILN_DTYPE_I4, {}), 1u);  // padded to a byte
  uint64_t bytes = 0;
  kiln_status_t s = kiln_dtype_storage_size(KILN_DTYPE_I32, nullptr, 0, &bytes);
  EXPECT_EQ(s, nullptr);
  EXPECT_EQ(bytes, 4u);
  kiln_status_free(s);
}

TEST(DType, ZeroDimensionsGiveZeroBytes) {
  EXPECT_EQ(Size(KILN_DTYPE_I8, {0, 9}), 0u);
  EXPECT_EQ(Size(KILN_DTYPE_F32, {9, 0}), 0u);
  EXPECT_EQ(Size(KILN_DTYPE_I4, {0}), 0u);
  // The product is zero even when the other dimensions overflow.
  EXPECT_EQ(Size(KILN_DTYPE_F64, {INT64_MAX, INT64_MAX, 0}), 0u);
  EXPECT_EQ(Size(KILN_DTYPE_F32, {0, INT64_MAX}), 0u);  // row alone overflows
}

TEST(DType, NegativeDimensionsAreInvalid) {
  std::string message;
  EXPECT_EQ(SizeError(KILN_DTYPE_F32, {2, -1}, &message),
            KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(message, "dimension 1 of a f32 tensor is negative (-1)");
  EXPECT_EQ(SizeError(KILN_DTYPE_I4, {INT64_MIN}, &message),
            KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(message,
            "dimension 0 of a i4 tensor is negative (-9223372036854775808)");
  // A negative dimension is an error even next to a zero one.
  EXPECT_EQ(SizeError(KILN_DTYPE_F32, {0, -3}), KILN_STATUS_INVALID_ARGUMENT);
}

TEST(DType, SizesUpTo64BitsAndNoFurther) {
  constexpr int64_t kMax = INT64_MAX;  // 2^63 - 1
  // Largest rows of each width.
  EXPECT_EQ(Size(KILN_DTYPE_U8, {kMax}), static_cast<uint64_t>(kMax));
  EXPECT_EQ(Size(KILN_DTYPE_U16, {kMax}), UINT64_MAX - 1);  // 2^64 - 2
  EXPECT_EQ(Size(KILN_DTYPE_I4, {kMax}), uint64_t{1} << 62);
  EXPECT_EQ(Size(KILN_DTYPE_F64, {(kMax >> 2)}), UINT64_MAX - 7);
  EXPECT_EQ(SizeError(KILN_DTYPE_F64, {(kMax >> 2) + 1}),
            KILN_STATUS_OUT_OF_RANGE);  // exactly 2^64
  EXPECT_EQ(SizeError(KILN_DTYPE_F32, {kMax}), KILN_STATUS_OUT_OF_RANGE);
  // Through the outer dimensions: 2^32 * 2^32 bytes is one too many.
  constexpr int64_t k2To32 = int64_t{1} << 32;
  EXPECT_EQ(Size(KILN_DTYPE_U8, {k2To32 - 1, k2To32}),
            UINT64_MAX - (k2To32 - 1));
  std::string message;
  EXPECT_EQ(SizeError(KILN_DTYPE_U8, {k2To32, k2To32}, &message),
            KILN_STATUS_OUT_OF_RANGE);
  EXPECT_EQ(message,
            "the storage size of a rank-2 ui8 tensor overflows 64 bits");
  EXPECT_EQ(SizeError(KILN_DTYPE_F32, {kMax, kMax, 4}),
            KILN_STATUS_OUT_OF_RANGE);
}

TEST(DType, StorageSizeNullArguments) {
  int64_t shape[] = {2};
  kiln_status_t s = kiln_dtype_storage_size(KILN_DTYPE_F32, shape, 1, nullptr);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_STREQ(kiln_status_message(s),
               "kiln_dtype_storage_size: out_bytes is NULL");
  kiln_status_free(s);
  uint64_t bytes = 123;
  s = kiln_dtype_storage_size(KILN_DTYPE_F32, nullptr, 2, &bytes);
  EXPECT_EQ(kiln_status_code(s), KILN_STATUS_INVALID_ARGUMENT);
  EXPECT_STREQ(kiln_status_message(s),
               "kiln_dtype_storage_size: shape is NULL but rank is 2");
  EXPECT_EQ(bytes, 0u);
  kiln_status_free(s);
}

}  // namespace
