// The groups of CPU kernels; each group's source file lists its kernels and
// the registry (registry.cc) collects them.
#ifndef KILN_RUNTIME_CPU_KERNELS_H_
#define KILN_RUNTIME_CPU_KERNELS_H_

#include <string_view>
#include <vector>

#include "cpu/kernel.h"

namespace kiln {

struct KernelEntry {
  std::string_view op;  // the kiln op name without the dialect prefix
  KernelFn fn;
};

// Elementwise arithmetic, comparisons, casts, reductions, softmax
// (elementwise.cc, reduce.cc).
void AppendElementwiseKernels(std::vector<KernelEntry>& out);
// Shape and data movement: reshape, transpose, concat, slice, gather...
// (movement.cc).
void AppendMovementKernels(std::vector<KernelEntry>& out);
// Matmul, norms, rope, attention, quantization, gated MLP (llm.cc,
// matmul.cc, attention.cc).
void AppendLlmKernels(std::vector<KernelEntry>& out);
// KV-cache updates and reads: kv_cache_append, kv_cache_read (kv_cache.cc).
void AppendKvCacheKernels(std::vector<KernelEntry>& out);

}  // namespace kiln

#endif  // KILN_RUNTIME_CPU_KERNELS_H_
