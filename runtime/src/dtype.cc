// Element types: names, widths and the packed storage rule.
#include <cstring>
#include <limits>

#include "kiln/runtime/api.h"

namespace {

struct DTypeInfo {
  kiln_dtype_t dtype;
  const char* name;
  uint32_t bits;
};

constexpr DTypeInfo kDTypes[] = {
    {KILN_DTYPE_F32, "f32", 32},       {KILN_DTYPE_F16, "f16", 16},
    {KILN_DTYPE_BF16, "bf16", 16},     {KILN_DTYPE_F64, "f64", 64},
    {KILN_DTYPE_F8E4M3FN, "f8E4M3FN", 8},
    {KILN_DTYPE_F8E5M2, "f8E5M2", 8},  {KILN_DTYPE_I1, "i1", 8},
    {KILN_DTYPE_I4, "i4", 4},          {KILN_DTYPE_U4, "ui4", 4},
    {KILN_DTYPE_I8, "i8", 8},          {KILN_DTYPE_U8, "ui8", 8},
    {KILN_DTYPE_I16, "i16", 16},       {KILN_DTYPE_U16, "ui16", 16},
    {KILN_DTYPE_I32, "i32", 32},       {KILN_DTYPE_U32, "ui32", 32},
    {KILN_DTYPE_I64, "i64", 64},       {KILN_DTYPE_U64, "ui64", 64},
};

const DTypeInfo* Find(kiln_dtype_t dtype) {
  for (const DTypeInfo& info : kDTypes)
    if (info.dtype == dtype) return &info;
  return nullptr;
}

bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

}  // namespace

extern "C" {

const char* kiln_dtype_name(kiln_dtype_t dtype) {
  const DTypeInfo* info = Find(dtype);
  return info ? info->name : "invalid";
}

kiln_status_t kiln_dtype_from_name(const char* name, kiln_dtype_t* out_dtype) {
  if (!name || !out_dtype)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_dtype_from_name: name and out_dtype must "
                            "not be NULL");
  for (const DTypeInfo& info : kDTypes) {
    if (std::strcmp(info.name, name) == 0) {
      *out_dtype = info.dtype;
      return nullptr;
    }
  }
  return KILN_MAKE_STATUS(KILN_STATUS_NOT_FOUND,
                          "unknown element type '%s' (expected one of f32, "
                          "f16, bf16, f64, f8E4M3FN, f8E5M2, i1, i4, ui4, i8, "
                          "ui8, i16, ui16, i32, ui32, i64, ui64)",
                          name);
}

uint32_t kiln_dtype_bit_width(kiln_dtype_t dtype) {
  const DTypeInfo* info = Find(dtype);
  return info ? info->bits : 0;
}

kiln_status_t kiln_dtype_storage_size(kiln_dtype_t dtype, const int64_t* shape,
                                      size_t rank, uint64_t* out_bytes) {
  const DTypeInfo* info = Find(dtype);
  if (!info)
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "invalid element type code %d",
                            static_cast<int>(dtype));
  if (!out_bytes || (rank > 0 && !shape))
    return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                            "kiln_dtype_storage_size: NULL shape or out_bytes");
  for (size_t i = 0; i < rank; ++i)
    if (shape[i] < 0)
      return KILN_MAKE_STATUS(KILN_STATUS_INVALID_ARGUMENT,
                              "dimension %zu is negative (%lld)", i,
                              static_cast<long long>(shape[i]));
  uint64_t inner = rank ? static_cast<uint64_t>(shape[rank - 1]) : 1;
  uint64_t outer = 1;
  for (size_t i = 0; i + 1 < rank; ++i) {
    if (MulOverflows(outer, static_cast<uint64_t>(shape[i]), &outer))
      return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE,
                              "tensor size overflows 64 bits");
  }
  uint64_t row_bits;
  if (MulOverflows(inner, info->bits, &row_bits))
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE,
                            "tensor size overflows 64 bits");
  uint64_t row_bytes = row_bits / 8 + (row_bits % 8 ? 1 : 0);
  uint64_t bytes;
  if (MulOverflows(outer, row_bytes, &bytes))
    return KILN_MAKE_STATUS(KILN_STATUS_OUT_OF_RANGE,
                            "tensor size overflows 64 bits");
  *out_bytes = bytes;
  return nullptr;
}

}  // extern "C"
