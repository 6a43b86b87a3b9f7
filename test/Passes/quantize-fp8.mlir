// RUN: kiln-opt %s '--kiln-quantize-weights=scheme=fp8' --split-input-file | FileCheck %s --check-prefix=TOKEN
// RUN: kiln-opt %s '--kiln-quantize-weights=scheme=fp8 weight-scales=tensor activations=tensor' --split-input-file | FileCheck %s --check-prefix=TENSOR
// RUN: kiln-opt %s '--kiln-quantize-weights=scheme=fp8 exclude=lm_head' --split-input-file | FileCheck %s --check-prefix=EXCL

// fp8: f8E4M3FN weights (f32 scales per output channel or per tensor) and
// f8E4M3FN activations: each quantized matmul reads a kiln.quantize of its
// input with dynamic scales, per token or per tensor.

// TOKEN-DAG: #[[W:.*]] = #kiln.quant<storage = f8E4M3FN, expressed = f32, block = [1, 0], scale = f32>
// TOKEN-DAG: #[[A:.*]] = #kiln.quant<storage = f8E4M3FN, expressed = f32, block = [1, 1, 0], scale = f32>
// TENSOR-DAG: #[[W:.*]] = #kiln.quant<storage = f8E4M3FN, expressed = f32, block = [0, 0], scale = f32>
// TENSOR-DAG: #[[A:.*]] = #kiln.quant<storage = f8E4M3FN, expressed = f32, block = [0, 0, 0], scale = f32>

// TOKEN-LABEL: func.func @projections
// TOKEN: %[[T:.*]] = kiln.transpose %{{.*}} [1, 0] : tensor<64x32xf32> -> tensor<32x64xf32>
// TOKEN: %[[QW:.*]] = kiln.quantize %[[T]] : tensor<32x64xf32> -> !kiln.qtensor<32x64, #[[W]]>
// TOKEN: %[[QX:.*]] = kiln.quantize %arg0 : tensor<?x?x64xf32> -> !kiln.qtensor<?x?x64, #[[A]]>
// TOKEN: kiln.matmul %[[QX]], %[[QW]] {transpose_b} : !kiln.qtensor<?x?x64, #[[A]]>, !kiln.qtensor<32x64, #[[W]]> -> tensor<?x?x32xf32>
// TOKEN: kiln.quantize %{{.*}} : tensor<100x32xf32> -> !kiln.qtensor<100x32, #[[W]]>
// TOKEN: kiln.quantize %{{.*}} : tensor<?x?x32xf32> -> !kiln.qtensor<?x?x32, #[[A]]>
// An activation x activation product (attention scores) is left alone.
// TOKEN: kiln.matmul %arg0, %arg1 : tensor<?x?x64xf32>, tensor<?x64x?xf32> -> tensor<?x?x?xf32>
// TENSOR-LABEL: func.func @projections
// TENSOR: kiln.quantize %{{.*}} : tensor<32x64xf32> -> !kiln.qtensor<32x64, #[[W]]>
// TENSOR: kiln.quantize %arg0 : tensor<?x?x64xf32> -> !kiln.qtensor<?x?x64, #[[A]]>
// Excluded: lm_head keeps float weights and a float input.
// EXCL-LABEL: func.func @projections
// EXCL: kiln.matmul %{{.*}}, %{{.*}} {transpose_b} : tensor<?x?x32xf32>, tensor<100x32xf32> -> tensor<?x?x100xf32>
module {
  kiln.weight_decl @w : tensor<64x32xf32>
  kiln.weight_decl @lm_head : tensor<100x32xf32>
  func.func @projections(%x: tensor<?x?x64xf32>, %k: tensor<?x64x?xf32>)
      -> (tensor<?x?x100xf32>, tensor<?x?x?xf32>) {
    %w = kiln.weight @w : tensor<64x32xf32>
    %y = kiln.matmul %x, %w : tensor<?x?x64xf32>, tensor<64x32xf32> -> tensor<?x?x32xf32>
    %l = kiln.weight @lm_head : tensor<100x32xf32>
    %z = kiln.matmul %y, %l {transpose_b} : tensor<?x?x32xf32>, tensor<100x32xf32> -> tensor<?x?x100xf32>
    %s = kiln.matmul %x, %k : tensor<?x?x64xf32>, tensor<?x64x?xf32> -> tensor<?x?x?xf32>
    return %z, %s : tensor<?x?x100xf32>, tensor<?x?x?xf32>
  }
}
