// A fused elementwise chain (kiln.elementwise): one pass over the NumPy
// broadcast of the inputs. The compiler generates the chain as a functor
// `Body` with `static float apply(const Args&, long long i)`, which loads
// the inputs of result element i and computes it in f32, and instantiates
// `elementwise<Out, Body, N>`: tensors 0..N-1 are the inputs, N the result.
#pragma once

#include "kiln/common.cuh"

namespace kiln {

/// Offset in `in` of the element at flat index `i` of `out`, broadcasting
/// `in` (right-aligned, unit dimensions repeat) to `out`'s shape.
__device__ __forceinline__ long long broadcast_offset(const Tensor& in, const Tensor& out,
                                                      long long i) {
  long long offset = 0, stride = 1;
  for (int d = out.rank - 1, k = in.rank - 1; d >= 0; --d, --k) {
    const long long coord = i % out.dims[d];
    i /= out.dims[d];
    if (k >= 0) {
      if (in.dims[k] != 1) offset += coord * stride;
      stride *= in.dims[k];
    }
  }
  return offset;
}

template <class Out, class Body, int N>
__device__ __forceinline__ void elementwise(const Args& a) {
  const Tensor& out = a.t[N];
  const long long n = numel(out);
  const long long step = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
    store<Out>(out, i, Body::apply(a, i));
}

}  // namespace kiln
