// The normalized fast Walsh-Hadamard transform (kiln.hadamard's arithmetic)
// and block rotations by a matrix (kiln.rotate's),
// shared by the CPU kernel and by kiln-compile, which rotates weights at
// compile time (kiln-quantize-weights scheme=w4a4) with exactly the
// runtime's operation order.
#ifndef KILN_RUNTIME_CPU_HADAMARD_H_
#define KILN_RUNTIME_CPU_HADAMARD_H_

#include <cmath>
#include <cstdint>

namespace kiln {

/// Replaces v[0, n) (n a power of two) by (H_n / sqrt(n)) v, H_n the
/// Sylvester Hadamard matrix, in f32: log2(n) butterfly passes, then one
/// scaling.
inline void FastHadamard(float* v, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2)
    for (int64_t i = 0; i < n; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        float a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
  const float scale = 1.0f / std::sqrt(float(n));
  for (int64_t i = 0; i < n; ++i) v[i] *= scale;
}

/// y[i] = sum_j x[j] * r[j * n + i] (kiln.rotate's arithmetic for one block
/// of n): f64 sums, rounded to f32 once.
inline void RotateBlock(const float* x, const float* r, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    double acc = 0;
    for (int64_t j = 0; j < n; ++j) acc += double(x[j]) * double(r[j * n + i]);
    y[i] = float(acc);
  }
}

/// Whether `n` is a power of two (>= 1).
inline bool IsPowerOfTwo(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

}  // namespace kiln

#endif  // KILN_RUNTIME_CPU_HADAMARD_H_
