// RUN: kiln-opt %s --kiln-kv-layout="layout=paged block-size=16" --split-input-file | FileCheck %s --check-prefix=PAGED
// RUN: kiln-opt %s --kiln-kv-layout="layout=paged block-size=8" --split-input-file | FileCheck %s --check-prefix=PAGED8
// RUN: kiln-opt %s --kiln-kv-layout="dtype=i8" --split-input-file | FileCheck %s --check-prefix=I8
// RUN: kiln-opt %s --kiln-kv-layout="dtype=fp8 layout=paged block-size=32 scale-type=f32" --split-input-file | FileCheck %s --check-prefix=FP8
// RUN: kiln-opt %s --kiln-kv-layout="dtype=i4" --split-input-file | FileCheck %s --check-prefix=I4
// RUN: kiln-opt %s --kiln-kv-layout="dtype=i4 group=16 layout=paged block-size=1" --split-input-file | FileCheck %s --check-prefix=I4G
// RUN: kiln-opt %s --kiln-kv-layout="layout=paged" --split-input-file --mlir-print-local-scope | FileCheck %s --check-prefix=PQ-PAGED
// RUN: kiln-opt %s --kiln-kv-layout="dtype=int4" --split-input-file --mlir-print-local-scope | FileCheck %s --check-prefix=PQ-I4
// RUN: kiln-opt %s --kiln-kv-layout --split-input-file | FileCheck %s --check-prefix=NONE
// RUN: not kiln-opt %s --kiln-kv-layout="dtype=i8 group=24" --split-input-file 2>&1 | FileCheck %s --check-prefix=GROUP
// RUN: not kiln-opt %s --kiln-kv-layout="layout=paged block-size=0" --split-input-file 2>&1 | FileCheck %s --check-prefix=BLOCK
// RUN: not kiln-opt %s --kiln-kv-layout="layout=ring" --split-input-file 2>&1 | FileCheck %s --check-prefix=LAYOUT
// RUN: not kiln-opt %s --kiln-kv-layout="dtype=i2" --split-input-file 2>&1 | FileCheck %s --check-prefix=DTYPE
// RUN: not kiln-opt %s --kiln-kv-layout="dtype=i8 scale-type=bf16" --split-input-file 2>&1 | FileCheck %s --check-prefix=SCALE

// One layer in canonical form: the cache argument, its append, attention on
// the appended cache, the shape read for positions, the cache returned.
// Only types change; every op and the signature take the new cache type.

// PAGED: !kv_cache = !kiln.kv_cache<paged<16>, f32, kv_heads = 2, head_dim = 64>
// PAGED-LABEL: func.func @layer
// PAGED-SAME: %{{.+}}: !kv_cache {kiln.kv = {layer = 0 : i64, role = "cache"}}
// PAGED-SAME: -> (tensor<?x?x4x64xf32>, !kv_cache {kiln.kv = {layer = 0 : i64, role = "cache"}}, tensor<4xi64>)
// PAGED: kiln.shape_of %{{.+}} : !kv_cache -> tensor<4xi64>
// PAGED: kiln.kv_cache_append %{{.+}} : !kv_cache, tensor<?x?x2x64xf32>, tensor<?x?x2x64xf32>
// PAGED: kiln.attention %{{.+}} cache(%{{.+}}) {{.*}} : (tensor<?x?x4x64xf32>, !kv_cache) -> tensor<?x?x4x64xf32>
// PAGED: return {{.*}} : tensor<?x?x4x64xf32>, !kv_cache, tensor<4xi64>

// PAGED8: !kiln.kv_cache<paged<8>, f32, kv_heads = 2, head_dim = 64>

// One scale per token and head; the compute type stays f32.
// I8: #[[Q:.+]] = #kiln.quant<storage = i8, expressed = f32, block = [1, 1, 1, 0], scale = f16>
// I8: !kv_cache = !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #[[Q]]>
// I8: kiln.kv_cache_append {{.*}} : !kv_cache, tensor<?x?x2x64xf32>, tensor<?x?x2x64xf32>

// FP8: #[[Q:.+]] = #kiln.quant<storage = f8E4M3FN, expressed = f32, block = [1, 1, 1, 0], scale = f32>
// FP8: !kiln.kv_cache<paged<32>, f8E4M3FN, kv_heads = 2, head_dim = 64, quant = #[[Q]]>

// int4 defaults to groups of 32 along the head dim.
// I4: #[[Q:.+]] = #kiln.quant<storage = i4, expressed = f32, block = [1, 1, 1, 32], scale = f16>
// I4: !kiln.kv_cache<contiguous, i4, kv_heads = 2, head_dim = 64, quant = #[[Q]]>

// I4G: #[[Q:.+]] = #kiln.quant<storage = i4, expressed = f32, block = [1, 1, 1, 16], scale = f16>
// I4G: !kiln.kv_cache<paged<1>, i4, kv_heads = 2, head_dim = 64, quant = #[[Q]]>

// No option: nothing changes.
// NONE: !kv_cache = !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>

// One error per cache type, not per value (one in each split).
// GROUP-COUNT-2: error: KV quantization group 24 does not divide head dim 64 (head_dim 64, v_head_dim 64)
// GROUP-NOT: error:
// BLOCK: error: paged KV cache block size must be >= 1, found 0
// LAYOUT: error: unknown KV layout 'ring' (expected contiguous or paged)
// DTYPE: error: unknown KV cache element type 'i2' (expected i8, f8E4M3FN or i4)
// SCALE: error: KV scale type must be f16 or f32, found 'bf16'
!c = !kiln.kv_cache<contiguous, f32, kv_heads = 2, head_dim = 64>
func.func @layer(%q: tensor<?x?x4x64xf32>, %c: !c {kiln.kv = {layer = 0 : i64, role = "cache"}},
                 %k: tensor<?x?x2x64xf32>, %v: tensor<?x?x2x64xf32>)
    -> (tensor<?x?x4x64xf32>, !c {kiln.kv = {layer = 0 : i64, role = "cache"}}, tensor<4xi64>) {
  %s = kiln.shape_of %c : !c -> tensor<4xi64>
  %c1 = kiln.kv_cache_append %c, %k, %v : !c, tensor<?x?x2x64xf32>, tensor<?x?x2x64xf32>
  %o = kiln.attention %q cache(%c1) {mask = #kiln.mask<causal>} : (tensor<?x?x4x64xf32>, !c) -> tensor<?x?x4x64xf32>
  return %o, %c1, %s : tensor<?x?x4x64xf32>, !c, tensor<4xi64>
}

// -----

// A cache that is already quantized keeps its scheme; the layout still
// applies. A bf16 model's cache quantizes with expressed = bf16.
// PQ-PAGED-LABEL: func.func @prequantized
// PQ-PAGED-SAME: !kiln.kv_cache<paged<16>, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f32, block = [1, 1, 1, 0], scale = f32>>
// PQ-PAGED-SAME: !kiln.kv_cache<paged<16>, bf16, kv_heads = 2, head_dim = 64>
// PQ-I4-LABEL: func.func @prequantized
// PQ-I4-SAME: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f32, block = [1, 1, 1, 0], scale = f32>>
// PQ-I4-SAME: !kiln.kv_cache<contiguous, i4, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i4, expressed = bf16, block = [1, 1, 1, 32], scale = f16>>
func.func @prequantized(
    %a: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f32, block = [1, 1, 1, 0], scale = f32>>,
    %b: !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>) {
  return
}
