// Embedding lookup (kiln.embedding): one block per id copies its table row.
#pragma once

#include "kiln/common.cuh"

namespace kiln {

/// Tensors: table [vocab, HIDDEN], ids (I), result [..., HIDDEN]. An id
/// outside [0, vocab) writes a NaN row: it never reads out of bounds, and
/// the NaN shows in the logits (the runtime checks ids from the host before
/// the launch; this guards ids produced on the device).
template <class T, class I, int HIDDEN, int BLOCK>
__device__ __forceinline__ void embedding(const Args& a) {
  const Tensor& table = a.t[0];
  const Tensor& ids = a.t[1];
  const Tensor& out = a.t[2];
  const long long row = blockIdx.x;
  const long long id = (long long)static_cast<const I*>(ids.data)[row];
  const bool valid = id >= 0 && id < table.dims[0];
  const T* src = static_cast<const T*>(table.data) + (valid ? id : 0) * HIDDEN;
  T* dst = static_cast<T*>(out.data) + row * HIDDEN;
  for (int c = threadIdx.x; c < HIDDEN; c += BLOCK)
    dst[c] = valid ? src[c] : from_float<T>(__int_as_float(0x7fc00000));
}

}  // namespace kiln
