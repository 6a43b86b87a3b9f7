// RUN: kiln-opt %s --kiln-quantize-weights=scheme=fp8 --split-input-file --verify-diagnostics
// RUN: not kiln-opt %s --kiln-quantize-weights=scheme=w4a4 --split-input-file 2>&1 | FileCheck %s --check-prefix=W4A4
// RUN: kiln-opt %s '--kiln-quantize-weights=scheme=fp8 exclude=^(down|w)$' --split-input-file | FileCheck %s

// fp8 (and w4a4) quantize the activation between a gated MLP's projections, which
// kiln.gated_mlp keeps inside: refused unless it is excluded (the
// graph pipeline leaves gated MLPs unfused for fp8).
// W4A4: error: w4a4 quantizes the activation between a gated MLP's projections
// W4A4: error: w4a4 quantizes the activation of this matmul, but it is already a quantized tensor
// CHECK: kiln.gated_mlp silu %arg0, gate(%{{.*}}) up(%{{.*}}) down(%{{.*}}) : (tensor<?x32xf32>, tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x32xf32>)
module {
  kiln.weight_decl @gate : tensor<32x64xf32>
  kiln.weight_decl @up : tensor<32x64xf32>
  kiln.weight_decl @down : tensor<64x32xf32>
  func.func @mlp(%x: tensor<?x32xf32>) -> tensor<?x32xf32> {
    %g = kiln.weight @gate : tensor<32x64xf32>
    %u = kiln.weight @up : tensor<32x64xf32>
    %d = kiln.weight @down : tensor<64x32xf32>
    // expected-error @+1 {{fp8 quantizes the activation between a gated MLP's projections}}
    %y = kiln.gated_mlp silu %x, gate(%g) up(%u) down(%d) : (tensor<?x32xf32>, tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x32xf32>) -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}

// -----

// The input of a matmul that is already a quantized tensor (a QDQ model)
// cannot be quantized again.
module {
  kiln.weight_decl @w : tensor<32x64xf32>
  func.func @qdq(%x: !kiln.qtensor<?x64, #kiln.quant<storage = i8, expressed = f32, block = [0, 0], scale = f32>>) -> tensor<?x32xf32> {
    %w = kiln.weight @w : tensor<32x64xf32>
    // expected-error @+1 {{fp8 quantizes the activation of this matmul, but it is already a quantized tensor}}
    %y = kiln.matmul %x, %w {transpose_b} : !kiln.qtensor<?x64, #kiln.quant<storage = i8, expressed = f32, block = [0, 0], scale = f32>>, tensor<32x64xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
