// A projection with a constant weight and no generation interface
// (kiln-compile-calib.test: calibration needs a model it can generate with).
module {
  func.func @forward(%x: tensor<?x8xf32> {kiln.name = "x"}) -> (tensor<?x4xf32> {kiln.name = "y"}) {
    %w = arith.constant dense<[[0.5, -1.0, 0.25, 2.0], [1.5, 0.75, -0.5, 0.125], [-2.0, 1.0, 0.5, -0.25], [0.375, -0.625, 1.25, 0.875], [1.0, 2.0, -1.5, 0.5], [-0.75, 0.25, 1.75, -1.25], [0.625, -0.125, -0.875, 1.5], [-1.0, 0.5, 0.25, -2.0]]> : tensor<8x4xf32>
    %y = kiln.matmul %x, %w : tensor<?x8xf32>, tensor<8x4xf32> -> tensor<?x4xf32>
    return %y : tensor<?x4xf32>
  }
}
