// RUN: not kiln-compile %s -o %t.kiln --quiet 2>&1 | FileCheck %s
// RUN: not test -e %t.kiln

// A weight with no stored data cannot be embedded.
// CHECK: error: weight 'w' has no stored data in the model; compile with --weights=external
module {
  kiln.weight_decl @w : tensor<4x4xf32>
  func.func @forward(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
    %w = kiln.weight @w : tensor<4x4xf32>
    %y = kiln.matmul %x, %w : tensor<?x4xf32>, tensor<4x4xf32> -> tensor<?x4xf32>
    return %y : tensor<?x4xf32>
  }
}
