// RUN: kiln-opt %s --kiln-quantize-weights | FileCheck %s --check-prefix=W8
// RUN: kiln-opt %s '--kiln-quantize-weights=scheme=w4a16 group=16' | FileCheck %s --check-prefix=W4
// RUN: kiln-opt %s '--kiln-quantize-weights=scheme=w4a16 group=32 zero-points=1 exclude=lm_h.*' | FileCheck %s --check-prefix=ZP

// kiln-quantize-weights: every float weight of a matmul or gated MLP becomes
// a kiln.quantize of its output-major [N, K] form, blocks along K.

// W8-DAG: #[[Q8:.*]] = #kiln.quant<storage = i8, expressed = f32, block = [1, 0], scale = f32>
// W4-DAG: #[[Q4:.*]] = #kiln.quant<storage = i4, expressed = f32, block = [1, 16], scale = f32>
// ZP-DAG: #[[QZ:.*]] = #kiln.quant<storage = ui4, expressed = f32, block = [1, 32], scale = f32, zero_point = ui4>

module {
  kiln.weight_decl @w : tensor<64x32xf32>
  kiln.weight_decl @q : tensor<32x64xf32>
  kiln.weight_decl @k : tensor<16x64xf32>
  kiln.weight_decl @lm_head : tensor<100x32xf32>
  kiln.weight_decl @gate : tensor<32x64xf32>
  kiln.weight_decl @up : tensor<32x64xf32>
  kiln.weight_decl @down : tensor<64x32xf32>

  // W8-LABEL: func.func @projections
  // A [K, N] weight is transposed first; the matmul becomes transpose_b.
  // W8: %[[W:.*]] = kiln.weight @w : tensor<64x32xf32>
  // W8: %[[T:.*]] = kiln.transpose %[[W]] [1, 0] : tensor<64x32xf32> -> tensor<32x64xf32>
  // W8: %[[Q:.*]] = kiln.quantize %[[T]] : tensor<32x64xf32> -> !kiln.qtensor<32x64, #[[Q8]]>
  // W8: kiln.matmul %arg0, %[[Q]] {transpose_b} : tensor<?x64xf32>, !kiln.qtensor<32x64, #[[Q8]]> -> tensor<?x32xf32>
  // Fused sibling projections (a concat of weights) are quantized together.
  // W8: %[[QK:.*]] = kiln.concat
  // W8: kiln.quantize %[[QK]] : tensor<48x64xf32> -> !kiln.qtensor<48x64, #[[Q8]]>
  // An output-major weight is quantized as it is.
  // W8: %[[L:.*]] = kiln.weight @lm_head
  // W8-NEXT: %[[LQ:.*]] = kiln.quantize %[[L]] : tensor<100x32xf32> -> !kiln.qtensor<100x32, #[[Q8]]>
  // W8-NEXT: kiln.matmul %arg1, %[[LQ]] {transpose_b}
  // W4-LABEL: func.func @projections
  // W4: kiln.quantize {{.*}} -> !kiln.qtensor<32x64, #[[Q4]]>
  // W4: kiln.quantize {{.*}} -> !kiln.qtensor<48x64, #[[Q4]]>
  // W4: kiln.quantize {{.*}} -> !kiln.qtensor<100x32, #[[Q4]]>
  // Excluded by name: lm_head stays float.
  // ZP-LABEL: func.func @projections
  // ZP: kiln.quantize {{.*}} -> !kiln.qtensor<32x64, #[[QZ]]>
  // ZP: kiln.quantize {{.*}} -> !kiln.qtensor<48x64, #[[QZ]]>
  // ZP: kiln.matmul %arg1, %{{.*}} {transpose_b} : tensor<?x32xf32>, tensor<100x32xf32> -> tensor<?x100xf32>
  func.func @projections(%x: tensor<?x64xf32>, %h: tensor<?x32xf32>)
      -> (tensor<?x32xf32>, tensor<?x48xf32>, tensor<?x100xf32>) {
    %w = kiln.weight @w : tensor<64x32xf32>
    %y = kiln.matmul %x, %w : tensor<?x64xf32>, tensor<64x32xf32> -> tensor<?x32xf32>
    %q = kiln.weight @q : tensor<32x64xf32>
    %k = kiln.weight @k : tensor<16x64xf32>
    %qk = kiln.concat %q, %k {axis = 0 : i64} : (tensor<32x64xf32>, tensor<16x64xf32>) -> tensor<48x64xf32>
    %p = kiln.matmul %x, %qk {transpose_b} : tensor<?x64xf32>, tensor<48x64xf32> -> tensor<?x48xf32>
    %l = kiln.weight @lm_head : tensor<100x32xf32>
    %z = kiln.matmul %h, %l {transpose_b} : tensor<?x32xf32>, tensor<100x32xf32> -> tensor<?x100xf32>
    return %y, %p, %z : tensor<?x32xf32>, tensor<?x48xf32>, tensor<?x100xf32>
  }

  // A gated MLP is quantized whole and becomes transpose_weights.
  // W8-LABEL: func.func @mlp
  // W8-COUNT-3: kiln.transpose
  // W8: kiln.gated_mlp silu %arg0, gate(%{{.*}}) up(%{{.*}}) down(%{{.*}}) {transpose_weights} : (tensor<?x32xf32>, !kiln.qtensor<64x32, #[[Q8]]>, !kiln.qtensor<64x32, #[[Q8]]>, !kiln.qtensor<32x64, #[[Q8]]>) -> tensor<?x32xf32>
  func.func @mlp(%x: tensor<?x32xf32>) -> tensor<?x32xf32> {
    %g = kiln.weight @gate : tensor<32x64xf32>
    %u = kiln.weight @up : tensor<32x64xf32>
    %d = kiln.weight @down : tensor<64x32xf32>
    %y = kiln.gated_mlp silu %x, gate(%g) up(%u) down(%d) : (tensor<?x32xf32>, tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x32xf32>) -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }

  // Near-misses: activations times activations, and weights already
  // quantized, stay as they are.
  // W8-LABEL: func.func @untouched
  // W8-NOT: kiln.quantize
  // W8: return
  func.func @untouched(%a: tensor<?x32xf32>, %b: tensor<32x8xf32>) -> tensor<?x8xf32> {
    %y = kiln.matmul %a, %b : tensor<?x32xf32>, tensor<32x8xf32> -> tensor<?x8xf32>
    return %y : tensor<?x8xf32>
  }
}
