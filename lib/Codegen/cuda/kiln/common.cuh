// Kiln's CUDA kernel library: what every kernel shares. The compiler embeds
// these headers and instantiates the templates with the shapes and dtypes it
// picks; NVRTC compiles each instantiation (see docs/cuda-codegen.md).
//
// The launch ABI: every kernel takes one `kiln::Args` by value, the launch's
// operands then results, each a `kiln::Tensor` (device pointer and the
// dimensions of this run). The runtime fills it from its values; grid and
// block sizes follow the rule the manifest gives per kernel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace kiln {

constexpr int kMaxRank = 6;
constexpr int kMaxTensors = 8;

struct Tensor {
  void* data;
  long long dims[kMaxRank];
  int rank;
  int reserved;
};

struct Args {
  Tensor t[kMaxTensors];
};

__device__ __forceinline__ long long numel(const Tensor& t) {
  long long n = 1;
  for (int i = 0; i < t.rank; ++i) n *= t.dims[i];
  return n;
}

// Element loads and stores through f32 (the CPU backend's arithmetic type):
// f16 and bf16 widen exactly, and stores round to nearest even.
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

/// `v` rounded to T and back: what storing an intermediate in T costs.
template <class T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

template <class T>
__device__ __forceinline__ float load(const Tensor& t, long long i) {
  return to_float(static_cast<const T*>(t.data)[i]);
}
template <class T>
__device__ __forceinline__ void store(const Tensor& t, long long i, float v) {
  static_cast<T*>(t.data)[i] = from_float<T>(v);
}

// IEEE maximum/minimum as arith.maximumf/minimumf define them: a NaN operand
// gives NaN (fmaxf would return the other operand).
__device__ __forceinline__ float maximum(float a, float b) {
  return (a != a || b != b) ? __int_as_float(0x7fc00000) : fmaxf(a, b);
}
__device__ __forceinline__ float minimum(float a, float b) {
  return (a != a || b != b) ? __int_as_float(0x7fc00000) : fminf(a, b);
}

// Activations (kiln.activation), as the CPU backend computes them.
__device__ __forceinline__ float relu(float x) { return x < 0.f ? 0.f : x; }  // keeps NaN
__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }
__device__ __forceinline__ float silu(float x) { return x / (1.f + expf(-x)); }
__device__ __forceinline__ float gelu(float x) {
  return 0.5f * x * (1.f + erff(x * 0.70710678118654752440f));
}
__device__ __forceinline__ float gelu_tanh(float x) {
  return 0.5f * x * (1.f + tanhf(0.79788456080286535588f * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/// The sum of `v` over the block, returned to every thread. BLOCK is a
/// multiple of 32, at most 1024.
template <int BLOCK>
__device__ __forceinline__ float block_sum(float v) {
  static_assert(BLOCK % 32 == 0 && BLOCK <= 1024, "block size");
  __shared__ float partial[BLOCK / 32];
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < BLOCK / 32 ? partial[lane] : 0.f;
  v = warp_sum(v);
  __syncthreads();  // partial may be reused by the caller's next reduction
  return v;
}

}  // namespace kiln
