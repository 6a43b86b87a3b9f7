// Block-wise quantization of a float tensor (kiln.quantize's arithmetic),
// shared by the CPU kernel and by kiln-compile, which quantizes weights at
// compile time (kiln-quantize-weights) with exactly the runtime's rounding.
#ifndef KILN_RUNTIME_CPU_QUANTIZE_H_
#define KILN_RUNTIME_CPU_QUANTIZE_H_

#include "cpu/tensor.h"
#include "kiln/runtime/api.h"

namespace kiln {

/// Quantizes `x` (f32, f16 or bf16) into `data` (its shape, the storage
/// dtype: i4, ui4, i8, ui8, f8E4M3FN or f8E5M2; 4-bit values packed along
/// the innermost dimension) in blocks of `block` elements per dimension
/// (each > 0). With `compute_scales`, writes each block's scale (symmetric:
/// max|x| to the largest stored magnitude; with `zero`: [min(x, 0),
/// max(x, 0)] onto the storage range, rounded zero point) into `scales`
/// (and `zero`), shape ceil(x / block); otherwise reads them. Rounds half to
/// even and saturates.
kiln_status_t QuantizeBlocks(const Tensor& x, const Dims& block, bool compute_scales,
                             const Tensor& data, const Tensor& scales, const Tensor* zero);

}  // namespace kiln

#endif  // KILN_RUNTIME_CPU_QUANTIZE_H_
