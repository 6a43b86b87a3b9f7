// Input for kiln-opt.test: the contraction dimensions disagree.
// RUN: true
func.func @f(%a: tensor<4x8xf32>, %b: tensor<16x3xf32>) -> tensor<4x3xf32> {
  %0 = kiln.matmul %a, %b : tensor<4x8xf32>, tensor<16x3xf32> -> tensor<4x3xf32>
  return %0 : tensor<4x3xf32>
}
