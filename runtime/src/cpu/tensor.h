// Tensors as the CPU backend's kernels see them: a dtype, a shape and a
// pointer into memory the executor owns (an arena slot, a mapped weight or a
// caller's buffer). Kernels never own memory.
#ifndef KILN_RUNTIME_CPU_TENSOR_H_
#define KILN_RUNTIME_CPU_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "kiln/runtime/api.h"

namespace kiln {

/// The largest rank a runtime tensor may have. The manifest loader rejects
/// artifacts with deeper values, so kernels may rely on it.
constexpr int kMaxRank = 8;

/// A shape of at most kMaxRank dimensions, stored inline (no allocation).
/// In a manifest's declared shapes, -1 marks a dimension known only at run
/// time; a runtime tensor's dimensions are always >= 0.
struct Dims {
  int rank = 0;
  int64_t d[kMaxRank] = {};

  Dims() = default;
  Dims(std::initializer_list<int64_t> dims) {
    for (int64_t v : dims) d[rank++] = v;
  }
  static Dims FromArray(const int64_t* dims, int n) {
    Dims r;
    r.rank = n;
    for (int i = 0; i < n; ++i) r.d[i] = dims[i];
    return r;
  }

  int64_t operator[](int i) const { return d[i]; }
  int64_t& operator[](int i) { return d[i]; }
  /// The dimension `i` counted from the end (back(0) is the innermost).
  int64_t back(int i = 0) const { return d[rank - 1 - i]; }
  void push_back(int64_t v) { d[rank++] = v; }

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= d[i];
    return n;
  }
  bool operator==(const Dims& o) const {
    if (rank != o.rank) return false;
    for (int i = 0; i < rank; ++i)
      if (d[i] != o.d[i]) return false;
    return true;
  }
  bool operator!=(const Dims& o) const { return !(*this == o); }
  /// "[2, 5, 64]" (dynamic dimensions as "?").
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank; ++i) {
      if (i) s += ", ";
      s += d[i] < 0 ? std::string("?") : std::to_string(d[i]);
    }
    return s + "]";
  }
};

/// Row-major strides, in elements, of a dense tensor of `shape`.
inline Dims StridesOf(const Dims& shape) {
  Dims s;
  s.rank = shape.rank;
  int64_t acc = 1;
  for (int i = shape.rank - 1; i >= 0; --i) {
    s.d[i] = acc;
    acc *= shape.d[i];
  }
  return s;
}

/// Bytes of a dense tensor (the packed rule of kiln_dtype_storage_size:
/// sub-byte types pack two per byte along the innermost dimension).
inline uint64_t StorageBytes(kiln_dtype_t dtype, const Dims& shape) {
  uint32_t bits = kiln_dtype_bit_width(dtype);
  if (shape.rank == 0) return (bits + 7) / 8;
  uint64_t outer = 1;
  for (int i = 0; i + 1 < shape.rank; ++i) outer *= uint64_t(shape.d[i]);
  return outer * ((uint64_t(shape.back()) * bits + 7) / 8);
}

/// A dense row-major tensor view.
struct Tensor {
  kiln_dtype_t dtype = KILN_DTYPE_INVALID;
  Dims shape;
  void* data = nullptr;  // may be null only when numel() == 0

  int64_t numel() const { return shape.numel(); }
  uint64_t bytes() const { return StorageBytes(dtype, shape); }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

/// A quantized operand (a !kiln.qtensor): stored values, scales and optional
/// zero points. `block[i]` is the quantization block along dimension i of
/// `data`'s logical shape: scales have shape ceil(shape[i] / block[i]) per
/// dimension, and element x dequantizes to
///   (x - zero_point[blk]) * scale[blk].
/// A zero point tensor with data == nullptr means "no zero point": the
/// storage type's own zero (0 for signed, 0 for unsigned too).
struct QTensor {
  Tensor data;         // storage dtype (i4, ui4, i8, ui8, f8...)
  Tensor scales;       // expressed/scale dtype
  Tensor zero_points;  // storage dtype, or data == nullptr
  Dims block;          // same rank as data.shape
  kiln_dtype_t expressed = KILN_DTYPE_F32;
  bool has_zero_points() const { return zero_points.data != nullptr; }
};


/// One layer's KV cache (a !kiln.kv_cache value) as kernels see it.
///
/// Storage is a pool of blocks; block n holds `block_size` token rows of
/// every KV head, keys at key + ((n * kv_heads + h) * block_size + slot) rows
/// of head_dim elements (values likewise with v_head_dim). Token t of
/// sequence b is in block block_table[b * blocks_per_seq + t / block_size],
/// slot t % block_size (layout `paged`). The contiguous layout is the same
/// with no table: sequence b is block b and block_size is `capacity`, so
/// keys are [batch][kv_heads][capacity][head_dim].
///
/// Element type: rows hold `storage` elements (`dtype` when unset). When that is a quantized type
/// (i8, i4 packed two per byte with element 0 in the low nibble, f8E4M3FN),
/// each row has dim / group scales (one when group is 0) of `scale_dtype`
/// at key_scale (value_scale) + row * groups, and a stored element x means
/// x * scale. `dtype` is the float type appends take and reads return.
///
/// Rows [0, length) of every (sequence, head) hold the tokens seen so far,
/// the same number for every sequence of the batch; capacity rows are
/// addressable. The storage belongs to the executor or to the session that
/// bound it; kernels never own it.
struct KvCache {
  kiln_dtype_t dtype = KILN_DTYPE_INVALID;
  kiln_dtype_t storage = KILN_DTYPE_INVALID;
  kiln_dtype_t scale_dtype = KILN_DTYPE_INVALID;
  int64_t group = 0;
  int64_t batch = 0, kv_heads = 0, head_dim = 0, v_head_dim = 0;
  int64_t capacity = 0;  // rows per (sequence, head)
  int64_t length = 0;    // valid rows per (sequence, head)
  int64_t block_size = 0;           // 0: contiguous
  const int32_t* block_table = nullptr;
  int64_t blocks_per_seq = 0;       // row stride of block_table
  void* key = nullptr;
  void* value = nullptr;
  void* key_scale = nullptr;
  void* value_scale = nullptr;
  /// A ragged batch (continuous batching): sequence b holds seq_lengths[b]
  /// rows (`length` is then the longest), and a step's new tokens are
  /// flattened as [1, N]: sequence b's are rows [q_offsets[b],
  /// q_offsets[b + 1]). Null for a uniform batch.
  const int64_t* seq_lengths = nullptr;
  const int64_t* q_offsets = nullptr;

  bool paged() const { return block_size > 0; }
  bool ragged() const { return seq_lengths != nullptr; }
  /// Rows held by sequence b.
  int64_t SeqLength(int64_t b) const { return seq_lengths ? seq_lengths[b] : length; }
  /// The stored element type (`storage`, or `dtype` when unset).
  kiln_dtype_t stored() const { return storage == KILN_DTYPE_INVALID ? dtype : storage; }
  bool quantized() const { return stored() != dtype; }
  /// Row index of token t of (sequence b, head h) in the block pool.
  int64_t Row(int64_t b, int64_t h, int64_t t) const {
    if (block_size == 0) return (b * kv_heads + h) * capacity + t;
    const int64_t blk = block_table[b * blocks_per_seq + t / block_size];
    return (blk * kv_heads + h) * block_size + t % block_size;
  }
  /// Element offset of key row (b, h, t); ValueOffset likewise for values
  /// (unquantized storage).
  int64_t KeyOffset(int64_t b, int64_t h, int64_t t) const { return Row(b, h, t) * head_dim; }
  int64_t ValueOffset(int64_t b, int64_t h, int64_t t) const {
    return Row(b, h, t) * v_head_dim;
  }
  /// Scales per row of `dim` elements (quantized storage).
  int64_t Groups(int64_t dim) const { return group > 0 ? dim / group : 1; }
};

}  // namespace kiln

#endif  // KILN_RUNTIME_CPU_TENSOR_H_
