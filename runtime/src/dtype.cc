// Element types: names, bit widths and the packed storage-size rule.
#include <cinttypes>
#include <cstdint>
#include <cstring>

#include "kiln/runtime/api.h"

namespace {

struct DTypeInfo {
  kiln_dtype_t dtype;
  const char* name;  // MLIR's spelling of the element type
  uint32_t bits;     // storage bits per element
};

// Indexed by the dtype's code, so lookups are a bounds check and a load.
constexpr DTypeInfo kDTypes[] = {
    {KILN_DTYPE_INVALID, "invalid", 0},
    {KILN_DTYPE_F32, "f32", 32},
    {KILN_DTYPE_F16, "f16", 16},
    {KILN_DTYPE_BF16, "bf16", 16},
    {KILN_DTYPE_F64, "f64", 64},
    {KILN_DTYPE_F8E4M3FN, "f8E4M3FN", 8},
    {KILN_DTYPE_F8E5M2, "f8E5M2", 8},
    {KILN_DTYPE_I1, "i1", 8},  // one byte per bool, not bit-packed
    {KILN_DTYPE_I4, "i4", 4},
    {KILN_DTYPE_U4, "ui4", 4},
    {KILN_DTYPE_I8, "i8", 8},
    {KILN_DTYPE_U8, "ui8", 8},
    {KILN_DTYPE_I16, "i16", 16},
    {KILN_DTYPE_U16, "ui16", 16},
    {KILN_DTYPE_I32, "i32", 32},
    {KILN_DTYPE_U32, "ui32", 32},
    {KILN_DTYPE_I64, "i64", 64},
    {KILN_DTYPE_U64, "ui64", 64},
};
constexpr int kDTypeCount = sizeof(kDTypes) / sizeof(kDTypes[0]);

constexpr bool TableIsIndexedByCode() {
  for (int i = 0; i < kDTypeCount; ++i) {
    if (static_cast<int>(kDTypes[i].dtype) != i) return false;
  }
  return true;
}
static_assert(TableIsIndexedByCode(), "kDTypes must be in code order");
static_assert(kDTypeCount == KILN_DTYPE_U64 + 1,
              "every kiln_dtype_t needs a kDTypes entry");

// The entry of a valid dtype; nullptr for KILN_DTYPE_INVALID and values
// outside the enum (C callers can pass any int).
const DTypeInfo* FindValid(kiln_dtype_t dtype) {
  int code = static_cast<int>(dtype);
  if (code <= KILN_DTYPE_INVALID || code >= kDTypeCount) return nullptr;
  return &kDTypes[code];
}

// Longest part of a caller's name quoted in an error, so that a garbage or
// unterminated-looking name cannot produce an unbounded message.
constexpr size_t kMaxQuotedNameLength = 64;

}  // namespace

extern "C" {

const char* kiln_dtype_name(kiln_dtype_t dtype) {
  const DTypeInfo* info = FindValid(dtype);
  return info ? info->name : kDTypes[KILN_DTYPE_INVALID].name;
}

kiln_status_t kiln_dtype_from_name(const char* name, kiln_dtype_t* out_dtype) {
  if (out_dtype) *out_dtype = KILN_DTYPE_INVALID;
  if (!name || !out_dtype) {
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_dtype_from_name: %s is NULL",
                            name ? "out_dtype" : "name");
  }
  for (int code = KILN_DTYPE_INVALID + 1; code < kDTypeCount; ++code) {
    if (std::strcmp(kDTypes[code].name, name) == 0) {
      *out_dtype = kDTypes[code].dtype;
      return nullptr;
    }
  }
  // Every name is short, so the list fits comfortably.
  char expected[160] = "";
  for (int code = KILN_DTYPE_INVALID + 1; code < kDTypeCount; ++code) {
    if (code > KILN_DTYPE_INVALID + 1) {
      std::strncat(expected, ", ",
                   sizeof(expected) - std::strlen(expected) - 1);
    }
    std::strncat(expected, kDTypes[code].name,
                 sizeof(expected) - std::strlen(expected) - 1);
  }
  bool truncated = false;
  for (size_t i = 0; i <= kMaxQuotedNameLength; ++i) {
    if (name[i] == '\0') break;
    if (i == kMaxQuotedNameLength) truncated = true;
  }
  return KILN_MAKE_STATUS(KILN_STATUS_NOT_FOUND,
                          "unknown element type '%.*s%s'; expected one of: %s",
                          static_cast<int>(kMaxQuotedNameLength), name,
                          truncated ? "..." : "", expected);
}

uint32_t kiln_dtype_bit_width(kiln_dtype_t dtype) {
  const DTypeInfo* info = FindValid(dtype);
  return info ? info->bits : 0;
}

kiln_status_t kiln_dtype_storage_size(kiln_dtype_t dtype, const int64_t* shape,
                                      size_t rank, uint64_t* out_bytes) {
  if (out_bytes) *out_bytes = 0;
  if (!out_bytes) {
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_dtype_storage_size: out_bytes is NULL");
  }
  if (rank > 0 && !shape) {
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_dtype_storage_size: shape is NULL but rank "
                            "is %zu",
                            rank);
  }
  const DTypeInfo* info = FindValid(dtype);
  if (!info) {
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "invalid element type code %d",
                            static_cast<int>(dtype));
  }
  bool has_zero_dim = false;
  for (size_t i = 0; i < rank; ++i) {
    if (shape[i] < 0) {
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "dimension %zu of a %s tensor is negative "
                              "(%" PRId64 ")",
                              i, info->name, shape[i]);
    }
    if (shape[i] == 0) has_zero_dim = true;
  }
  // An empty tensor takes no storage even if its other dimensions multiply
  // past 64 bits.
  if (has_zero_dim) return nullptr;

  // ceil(inner * bits / 8), computed without forming inner * bits (which
  // can overflow when the result does not): with inner = 8q + r it is
  // q * bits + ceil(r * bits / 8). Only the product can overflow: when it
  // fits it is at most 2^64 - bits (a multiple of bits), and the tail is below
  // bits for whole-byte types, while for 4-bit types q < 2^60 keeps the
  // product far from the limit.
  uint64_t inner = rank > 0 ? static_cast<uint64_t>(shape[rank - 1]) : 1;
  uint64_t bits = info->bits;
  uint64_t whole = inner / 8;
  if (whole > UINT64_MAX / bits) {
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE,
                            "the storage size of a rank-%zu %s tensor "
                            "overflows 64 bits",
                            rank, info->name);
  }
  uint64_t row_bytes = whole * bits + (inner % 8 * bits + 7) / 8;

  uint64_t bytes = row_bytes;
  for (size_t i = 0; i + 1 < rank; ++i) {
    uint64_t dim = static_cast<uint64_t>(shape[i]);  // > 0 here
    if (bytes > UINT64_MAX / dim) {
      return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE,
                              "the storage size of a rank-%zu %s tensor "
                              "overflows 64 bits",
                              rank, info->name);
    }
    bytes *= dim;
  }
  *out_bytes = bytes;
  return nullptr;
}

}  // extern "C"
