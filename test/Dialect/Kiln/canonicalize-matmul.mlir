// RUN: kiln-opt %s --canonicalize --split-input-file | FileCheck %s

// A matmul of a dequantized weight reads the qtensor itself.
!q = !kiln.qtensor<64x32, #kiln.quant<storage = i8, expressed = f32, block = [0, 1], scale = f32>>
// CHECK-LABEL: func.func @direct
// CHECK-NEXT: %[[Q:.*]] = kiln.make_qtensor
// CHECK-NEXT: %[[Y:.*]] = kiln.matmul %arg0, %[[Q]] : tensor<?x64xf32>, !kiln.qtensor<64x32, #{{.*}}> -> tensor<?x32xf32>
// CHECK-NEXT: return %[[Y]]
func.func @direct(%x: tensor<?x64xf32>, %d: tensor<64x32xi8>, %s: tensor<1x32xf32>) -> tensor<?x32xf32> {
  %q = kiln.make_qtensor %d, %s : tensor<64x32xi8>, tensor<1x32xf32> -> !q
  %w = kiln.dequantize %q : !q -> tensor<64x32xf32>
  %y = kiln.matmul %x, %w : tensor<?x64xf32>, tensor<64x32xf32> -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}

// -----

// Through a 2-D transpose: transpose_b flips.
!q = !kiln.qtensor<32x64, #kiln.quant<storage = i4, expressed = f32, block = [1, 32], scale = f32>>
// CHECK-LABEL: func.func @transposed
// CHECK: %[[Q:.*]] = kiln.make_qtensor
// CHECK-NEXT: kiln.matmul %arg0, %[[Q]] {transpose_b} : tensor<?x64xf32>, !kiln.qtensor<32x64, #{{.*}}> -> tensor<?x32xf32>
// CHECK-NOT: kiln.transpose
// CHECK-LABEL: func.func @transposed_twice
// CHECK: kiln.matmul %arg0, %{{.*}} : tensor<?x32xf32>, !kiln.qtensor<32x64, #{{.*}}> -> tensor<?x64xf32>
func.func @transposed(%x: tensor<?x64xf32>, %d: tensor<32x64xi4>, %s: tensor<32x2xf32>) -> tensor<?x32xf32> {
  %q = kiln.make_qtensor %d, %s : tensor<32x64xi4>, tensor<32x2xf32> -> !q
  %w = kiln.dequantize %q : !q -> tensor<32x64xf32>
  %t = kiln.transpose %w [1, 0] : tensor<32x64xf32> -> tensor<64x32xf32>
  %y = kiln.matmul %x, %t : tensor<?x64xf32>, tensor<64x32xf32> -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}
func.func @transposed_twice(%x: tensor<?x32xf32>, %d: tensor<32x64xi4>, %s: tensor<32x2xf32>) -> tensor<?x64xf32> {
  %q = kiln.make_qtensor %d, %s : tensor<32x64xi4>, tensor<32x2xf32> -> !q
  %w = kiln.dequantize %q : !q -> tensor<32x64xf32>
  %t = kiln.transpose %w [1, 0] : tensor<32x64xf32> -> tensor<64x32xf32>
  %y = kiln.matmul %x, %t {transpose_b} : tensor<?x32xf32>, tensor<64x32xf32> -> tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Near-miss: a dequantized activation (the a operand) stays as it is.
!q = !kiln.qtensor<4x64, #kiln.quant<storage = i8, expressed = f32, block = [1, 0], scale = f32>>
// CHECK-LABEL: func.func @activation
// CHECK: kiln.dequantize
// CHECK: kiln.matmul %{{.*}}, %arg1 : tensor<4x64xf32>, tensor<64x8xf32>
func.func @activation(%d: tensor<4x64xi8>, %w: tensor<64x8xf32>, %s: tensor<4x1xf32>) -> tensor<4x8xf32> {
  %q = kiln.make_qtensor %d, %s : tensor<4x64xi8>, tensor<4x1xf32> -> !q
  %a = kiln.dequantize %q : !q -> tensor<4x64xf32>
  %y = kiln.matmul %a, %w : tensor<4x64xf32>, tensor<64x8xf32> -> tensor<4x8xf32>
  return %y : tensor<4x8xf32>
}
