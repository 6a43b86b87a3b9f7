// A weight declared with no stored data: bound at load time (kiln-compile-quant.test).
module {
  kiln.weight_decl @w : tensor<64x32xf32>
  func.func @forward(%x: tensor<?x64xf32> {kiln.name = "x"}) -> (tensor<?x32xf32> {kiln.name = "y"}) {
    %w = kiln.weight @w : tensor<64x32xf32>
    %y = kiln.matmul %x, %w : tensor<?x64xf32>, tensor<64x32xf32> -> tensor<?x32xf32>
    return %y : tensor<?x32xf32>
  }
}
