// Rotary position embedding (kiln.rope) of a [B, S, H, D] input: one block
// per (batch, position) row of H * D elements, a thread per rotated pair.
#pragma once

#include "kiln/common.cuh"

namespace kiln {

/// Tensors: input, cos, sin, [positions (P)], result. With positions, cos
/// and sin are caches [max_position, ROT / 2] indexed by position (the
/// runtime checks the positions against the cache before the launch);
/// without, they are gathered, [B or 1, S, ROT / 2]. Pairs are (x[i],
/// x[i + ROT/2]) (rotate-half) or (x[2i], x[2i+1]) (INTERLEAVED); channels
/// from ROT on are copied.
template <class T, class C, class P, int HEADS, int DIM, int ROT, bool INTERLEAVED,
          bool POSITIONS, int BLOCK>
__device__ __forceinline__ void rope(const Args& a) {
  constexpr int HALF = ROT / 2;
  const Tensor& x = a.t[0];
  const Tensor& cos_t = a.t[1];
  const Tensor& sin_t = a.t[2];
  const Tensor& y = a.t[POSITIONS ? 4 : 3];
  const long long S = x.dims[1];
  const long long bs = blockIdx.x;
  const long long b = bs / S, s = bs % S;
  long long row;
  if (POSITIONS) {
    const Tensor& pos = a.t[3];
    const long long stride = pos.dims[0] == 1 ? 0 : S;
    row = (long long)static_cast<const P*>(pos.data)[b * stride + s];
  } else {
    row = (cos_t.dims[0] == 1 ? 0 : b * S) + s;
  }
  const long long base = bs * (long long)(HEADS * DIM);
  for (int k = threadIdx.x; k < HEADS * HALF; k += BLOCK) {
    const int h = k / HALF, i = k % HALF;
    const long long off = base + (long long)h * DIM;
    const int i1 = INTERLEAVED ? 2 * i : i, i2 = INTERLEAVED ? 2 * i + 1 : i + HALF;
    const float c = load<C>(cos_t, row * HALF + i), sn = load<C>(sin_t, row * HALF + i);
    const float x1 = load<T>(x, off + i1), x2 = load<T>(x, off + i2);
    store<T>(y, off + i1, x1 * c - x2 * sn);
    store<T>(y, off + i2, x1 * sn + x2 * c);
  }
  if (ROT < DIM)
    for (int k = threadIdx.x; k < HEADS * (DIM - ROT); k += BLOCK) {
      const long long off = base + (long long)(k / (DIM - ROT)) * DIM + ROT + k % (DIM - ROT);
      static_cast<T*>(y.data)[off] = static_cast<const T*>(x.data)[off];
    }
}

}  // namespace kiln
