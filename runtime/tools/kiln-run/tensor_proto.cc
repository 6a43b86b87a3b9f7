#include "tensor_proto.h"

#include <cstring>

namespace kiln::tools {

namespace {

// TensorProto field numbers (onnx/onnx.proto).
enum Field {
  kDims = 1,
  kDataType = 2,
  kSegment = 3,
  kFloatData = 4,
  kInt32Data = 5,
  kStringData = 6,
  kInt64Data = 7,
  kName = 8,
  kRawData = 9,
  kDoubleData = 10,
  kUint64Data = 11,
  kDocString = 12,
  kExternalData = 13,
  kDataLocation = 14,
  kMetadataProps = 16,
};

class Reader {
 public:
  Reader(const std::string& b) : p_(reinterpret_cast<const uint8_t*>(b.data())), n_(b.size()) {}
  bool done() const { return pos_ >= n_; }
  size_t pos() const { return pos_; }
  bool Varint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= n_) return false;
      uint8_t byte = p_[pos_++];
      *v |= uint64_t(byte & 0x7F) << shift;
      if (!(byte & 0x80)) return true;
    }
    return false;
  }
  bool Bytes(size_t len, const uint8_t** out) {
    if (len > n_ - pos_) return false;
    *out = p_ + pos_;
    pos_ += len;
    return true;
  }
  bool Skip(int wire) {
    uint64_t v;
    const uint8_t* b;
    switch (wire) {
      case 0: return Varint(&v);
      case 1: return Bytes(8, &b);
      case 2: return Varint(&v) && Bytes(size_t(v), &b);
      case 5: return Bytes(4, &b);
      default: return false;
    }
  }

 private:
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
};

// 4-bit values between ONNX's layout (the flattened tensor packed two per
// byte, low nibble first) and kiln's (each innermost row packed on its own,
// an odd row ending in a half-used byte). `to_rows` converts ONNX -> kiln.
std::vector<uint8_t> RepackNibbles(const std::vector<uint8_t>& in,
                                   const std::vector<int64_t>& shape, bool to_rows) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  int64_t inner = shape.empty() ? 1 : shape.back();
  int64_t row_bytes = (inner + 1) / 2;
  int64_t rows = inner ? numel / inner : 0;
  std::vector<uint8_t> out(size_t(to_rows ? rows * row_bytes : (numel + 1) / 2), 0);
  for (int64_t i = 0; i < numel; ++i) {
    int64_t row = i / inner, col = i % inner;
    size_t flat_at = size_t(i / 2), row_at = size_t(row * row_bytes + col / 2);
    int flat_shift = i % 2 ? 4 : 0, row_shift = col % 2 ? 4 : 0;
    size_t from = to_rows ? flat_at : row_at, to = to_rows ? row_at : flat_at;
    int from_shift = to_rows ? flat_shift : row_shift, to_shift = to_rows ? row_shift : flat_shift;
    out[to] |= uint8_t(((in[from] >> from_shift) & 0xF) << to_shift);
  }
  return out;
}

void PutVarint(std::string& s, uint64_t v) {
  while (v >= 0x80) {
    s.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  s.push_back(char(v));
}

}  // namespace

kiln_dtype_t DtypeFromOnnx(int64_t code) {
  switch (code) {
    case 1: return KILN_DTYPE_F32;
    case 2: return KILN_DTYPE_U8;
    case 3: return KILN_DTYPE_I8;
    case 4: return KILN_DTYPE_U16;
    case 5: return KILN_DTYPE_I16;
    case 6: return KILN_DTYPE_I32;
    case 7: return KILN_DTYPE_I64;
    case 9: return KILN_DTYPE_I1;
    case 10: return KILN_DTYPE_F16;
    case 11: return KILN_DTYPE_F64;
    case 12: return KILN_DTYPE_U32;
    case 13: return KILN_DTYPE_U64;
    case 16: return KILN_DTYPE_BF16;
    case 17: return KILN_DTYPE_F8E4M3FN;
    case 19: return KILN_DTYPE_F8E5M2;
    case 21: return KILN_DTYPE_U4;
    case 22: return KILN_DTYPE_I4;
    default: return KILN_DTYPE_INVALID;
  }
}

int OnnxFromDtype(kiln_dtype_t dtype) {
  for (int code = 1; code <= 22; ++code)
    if (DtypeFromOnnx(code) == dtype) return code;
  return 0;
}

bool ParseTensorProto(const std::string& bytes, HostTensor* out, std::string* error) {
  Reader r(bytes);
  int64_t code = 0;
  std::vector<uint8_t> raw;
  bool has_raw = false;
  // Typed repeated fields, kept as 64-bit values until the dtype is known.
  std::vector<uint64_t> ints;
  std::vector<uint8_t> fixed;  // float_data / double_data bytes
  auto fail = [&](size_t at, const std::string& what) {
    *error = "offset " + std::to_string(at) + ": " + what;
    return false;
  };
  while (!r.done()) {
    size_t at = r.pos();
    uint64_t key;
    if (!r.Varint(&key)) return fail(at, "truncated field key");
    int field = int(key >> 3), wire = int(key & 7);
    auto packed_varints = [&](std::vector<uint64_t>& dst) -> bool {
      if (wire == 0) {
        uint64_t v;
        if (!r.Varint(&v)) return false;
        dst.push_back(v);
        return true;
      }
      if (wire != 2) return false;
      uint64_t len;
      const uint8_t* b;
      if (!r.Varint(&len) || !r.Bytes(size_t(len), &b)) return false;
      std::string sub(reinterpret_cast<const char*>(b), size_t(len));
      Reader inner(sub);
      while (!inner.done()) {
        uint64_t v;
        if (!inner.Varint(&v)) return false;
        dst.push_back(v);
      }
      return true;
    };
    switch (field) {
      case kDims: {
        std::vector<uint64_t> d;
        if (!packed_varints(d)) return fail(at, "malformed dims");
        for (uint64_t v : d) out->shape.push_back(int64_t(v));
        break;
      }
      case kDataType: {
        uint64_t v;
        if (wire != 0 || !r.Varint(&v)) return fail(at, "malformed data_type");
        code = int64_t(v);
        break;
      }
      case kFloatData:
      case kDoubleData: {
        size_t width = field == kFloatData ? 4 : 8;
        const uint8_t* b;
        if (wire == 2) {
          uint64_t len;
          if (!r.Varint(&len) || !r.Bytes(size_t(len), &b) || len % width)
            return fail(at, "malformed packed float/double data");
          fixed.insert(fixed.end(), b, b + len);
        } else if ((wire == 5 && width == 4) || (wire == 1 && width == 8)) {
          if (!r.Bytes(width, &b)) return fail(at, "truncated float/double data");
          fixed.insert(fixed.end(), b, b + width);
        } else {
          return fail(at, "float/double data with wire type " + std::to_string(wire));
        }
        break;
      }
      case kInt32Data:
      case kInt64Data:
      case kUint64Data:
        if (!packed_varints(ints)) return fail(at, "malformed integer data");
        break;
      case kRawData: {
        uint64_t len;
        const uint8_t* b;
        if (wire != 2 || !r.Varint(&len) || !r.Bytes(size_t(len), &b))
          return fail(at, "truncated raw_data");
        raw.assign(b, b + len);
        has_raw = true;
        break;
      }
      case kName: {
        uint64_t len;
        const uint8_t* b;
        if (wire != 2 || !r.Varint(&len) || !r.Bytes(size_t(len), &b))
          return fail(at, "truncated name");
        out->name.assign(reinterpret_cast<const char*>(b), size_t(len));
        break;
      }
      case kStringData:
        return fail(at, "string tensors are not supported");
      case kSegment:
        return fail(at, "segmented tensors are not supported");
      case kExternalData:
        return fail(at, "tensors with external data are not supported");
      case kDataLocation: {
        uint64_t v;
        if (wire != 0 || !r.Varint(&v)) return fail(at, "malformed data_location");
        if (v != 0) return fail(at, "tensors with external data are not supported");
        break;
      }
      default:
        if (!r.Skip(wire)) return fail(at, "malformed field " + std::to_string(field));
    }
  }
  out->dtype = DtypeFromOnnx(code);
  if (out->dtype == KILN_DTYPE_INVALID)
    return fail(0, "data_type " + std::to_string(code) + " is not supported");
  uint64_t bytes_needed = 0;
  if (out->shape.size() > 8) return fail(0, "rank " + std::to_string(out->shape.size()) + " exceeds 8");
  kiln_status_t s = kiln_dtype_storage_size(out->dtype, out->shape.data(), out->shape.size(),
                                            &bytes_needed);
  if (s) {
    *error = std::string("bad shape: ") + kiln_status_message(s);
    kiln_status_free(s);
    return false;
  }
  int64_t numel = 1;
  for (int64_t d : out->shape) numel *= d;
  uint32_t bits = kiln_dtype_bit_width(out->dtype);
  if (bits == 4) {
    // ONNX packs the flattened tensor two values per byte, low nibble first,
    // in raw_data or one byte per int32_data entry; kiln packs each innermost
    // row on its own.
    size_t flat_bytes = size_t((numel + 1) / 2);
    std::vector<uint8_t> flat;
    if (has_raw) {
      flat = std::move(raw);
    } else {
      for (uint64_t v : ints) flat.push_back(uint8_t(v));
    }
    if (flat.size() != flat_bytes)
      return fail(0, std::string(has_raw ? "raw_data" : "int32_data") + " holds " +
                         std::to_string(flat.size()) + " bytes; the shape needs " +
                         std::to_string(flat_bytes));
    out->data = RepackNibbles(flat, out->shape, /*to_rows=*/true);
    return true;
  }
  if (has_raw) {
    if (raw.size() != bytes_needed)
      return fail(0, "raw_data holds " + std::to_string(raw.size()) + " bytes; the shape needs " +
                         std::to_string(bytes_needed));
    out->data = std::move(raw);
    return true;
  }
  out->data.assign(size_t(bytes_needed), 0);
  if (out->dtype == KILN_DTYPE_F32 || out->dtype == KILN_DTYPE_F64) {
    if (fixed.size() != bytes_needed) return fail(0, "float data does not match the shape");
    std::memcpy(out->data.data(), fixed.data(), fixed.size());
    return true;
  }
  if (int64_t(ints.size()) != numel) return fail(0, "integer data does not match the shape");
  for (int64_t i = 0; i < numel; ++i) {
    uint64_t v = ints[size_t(i)];
    std::memcpy(out->data.data() + size_t(i) * (bits / 8), &v, bits / 8);
  }
  return true;
}

std::string SerializeTensorProto(const HostTensor& t) {
  std::string s;
  for (int64_t d : t.shape) {
    PutVarint(s, (kDims << 3) | 0);
    PutVarint(s, uint64_t(d));
  }
  PutVarint(s, (kDataType << 3) | 0);
  PutVarint(s, uint64_t(OnnxFromDtype(t.dtype)));
  if (!t.name.empty()) {
    PutVarint(s, (kName << 3) | 2);
    PutVarint(s, t.name.size());
    s += t.name;
  }
  std::vector<uint8_t> flat;
  const std::vector<uint8_t>* data = &t.data;
  if (kiln_dtype_bit_width(t.dtype) == 4) {
    flat = RepackNibbles(t.data, t.shape, /*to_rows=*/false);
    data = &flat;
  }
  PutVarint(s, (kRawData << 3) | 2);
  PutVarint(s, data->size());
  s.append(reinterpret_cast<const char*>(data->data()), data->size());
  return s;
}

}  // namespace kiln::tools
