// RMS normalization (kiln.rms_norm) and its fusion with the residual add
// (kiln.add_rms_norm): one block per row of COLS elements, the row kept in
// registers between the reduction and the scaling.
#pragma once

#include "kiln/common.cuh"

namespace kiln {

/// Tensors: input, weight, result (rms_norm), or input, residual, weight,
/// sum, result (add_rms_norm, RESIDUAL). The weight has the row's COLS
/// elements. T is the activations' type, W the weight's.
template <class T, class W, int COLS, int BLOCK, bool RESIDUAL>
__device__ __forceinline__ void rms_norm(const Args& a, float epsilon) {
  constexpr int PER_THREAD = (COLS + BLOCK - 1) / BLOCK;
  const Tensor& x = a.t[0];
  const Tensor& w = a.t[RESIDUAL ? 2 : 1];
  const Tensor& y = a.t[RESIDUAL ? 4 : 2];
  const long long row = blockIdx.x;
  const long long base = row * COLS;
  float v[PER_THREAD];
  float squares = 0.f;
#pragma unroll
  for (int j = 0; j < PER_THREAD; ++j) {
    const int c = threadIdx.x + j * BLOCK;
    v[j] = 0.f;
    if (c < COLS) {
      v[j] = load<T>(x, base + c);
      if (RESIDUAL) {
        // The sum is normalized as stored, as the unfused add then norm.
        v[j] = round_to<T>(v[j] + load<T>(a.t[1], base + c));
        store<T>(a.t[3], base + c, v[j]);
      }
      squares += v[j] * v[j];
    }
  }
  const float total = block_sum<BLOCK>(squares);
  const float inv = 1.f / sqrtf(total / float(COLS) + epsilon);
#pragma unroll
  for (int j = 0; j < PER_THREAD; ++j) {
    const int c = threadIdx.x + j * BLOCK;
    if (c < COLS) store<T>(y, base + c, v[j] * inv * load<W>(w, c));
  }
}

/// Layer normalization (kiln.layer_norm): tensors input, weight, [bias,]
/// result; mean and variance over the row's COLS elements, in f32.
template <class T, class W, int COLS, int BLOCK, bool BIAS>
__device__ __forceinline__ void layer_norm(const Args& a, float epsilon) {
  constexpr int PER_THREAD = (COLS + BLOCK - 1) / BLOCK;
  const Tensor& x = a.t[0];
  const Tensor& w = a.t[1];
  const Tensor& y = a.t[BIAS ? 3 : 2];
  const long long base = (long long)blockIdx.x * COLS;
  float v[PER_THREAD];
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < PER_THREAD; ++j) {
    const int c = threadIdx.x + j * BLOCK;
    v[j] = c < COLS ? load<T>(x, base + c) : 0.f;
    sum += v[j];
  }
  const float mean = block_sum<BLOCK>(sum) / float(COLS);
  float squares = 0.f;
#pragma unroll
  for (int j = 0; j < PER_THREAD; ++j) {
    const int c = threadIdx.x + j * BLOCK;
    v[j] = c < COLS ? v[j] - mean : 0.f;
    squares += v[j] * v[j];
  }
  const float inv = 1.f / sqrtf(block_sum<BLOCK>(squares) / float(COLS) + epsilon);
#pragma unroll
  for (int j = 0; j < PER_THREAD; ++j) {
    const int c = threadIdx.x + j * BLOCK;
    if (c >= COLS) continue;
    float r = v[j] * inv * load<W>(w, c);
    if (BIAS) r += load<W>(a.t[2], c);
    store<T>(y, base + c, r);
  }
}

}  // namespace kiln
