// RUN: kiln-opt %s --canonicalize --split-input-file | FileCheck %s

// CHECK-LABEL: func.func @identity_ops
// CHECK-SAME: (%[[X:.+]]: tensor<2x3xf32>)
func.func @identity_ops(%x: tensor<2x3xf32>) -> (tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>) {
  %0 = kiln.cast %x : tensor<2x3xf32> to tensor<2x3xf32>
  %1 = kiln.reshape %x : tensor<2x3xf32> -> tensor<2x3xf32>
  %2 = kiln.transpose %x [0, 1] : tensor<2x3xf32> -> tensor<2x3xf32>
  %3 = kiln.concat %x {axis = 0 : i64} : (tensor<2x3xf32>) -> tensor<2x3xf32>
  %4 = kiln.slice %x {axes = array<i64: 1>, starts = array<i64: 0>, ends = array<i64: 9223372036854775807>, steps = array<i64: 1>} : tensor<2x3xf32> -> tensor<2x3xf32>
  %5 = kiln.broadcast %x : tensor<2x3xf32> -> tensor<2x3xf32>
  // CHECK-NOT: kiln.
  // CHECK: return %[[X]], %[[X]], %[[X]], %[[X]], %[[X]], %[[X]]
  return %0, %1, %2, %3, %4, %5 : tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>
}

// -----

// Near misses: each op changes its value, so each stays.
// CHECK-LABEL: func.func @not_identity
func.func @not_identity(%x: tensor<2x3xf32>, %d: tensor<?x3xf32>, %s: tensor<2xi64>)
    -> (tensor<2x3xbf16>, tensor<3x2xf32>, tensor<2x2xf32>, tensor<?x3xf32>, tensor<2x3xf32>) {
  // CHECK: kiln.cast
  %0 = kiln.cast %x : tensor<2x3xf32> to tensor<2x3xbf16>
  // CHECK: kiln.transpose
  %1 = kiln.transpose %x [1, 0] : tensor<2x3xf32> -> tensor<3x2xf32>
  // CHECK: kiln.slice
  %2 = kiln.slice %x {axes = array<i64: 1>, starts = array<i64: 1>, ends = array<i64: 3>, steps = array<i64: 1>} : tensor<2x3xf32> -> tensor<2x2xf32>
  // A dynamic reshape may regroup rows at run time: it is not an identity.
  // CHECK: kiln.reshape
  %3 = kiln.reshape %d shape(%s : tensor<2xi64>) : tensor<?x3xf32> -> tensor<?x3xf32>
  // A reversing slice keeps every element but not their order.
  // CHECK: kiln.slice
  %4 = kiln.slice %x {axes = array<i64: 1>, starts = array<i64: -1>, ends = array<i64: -9223372036854775807>, steps = array<i64: -1>} : tensor<2x3xf32> -> tensor<2x3xf32>
  return %0, %1, %2, %3, %4 : tensor<2x3xbf16>, tensor<3x2xf32>, tensor<2x2xf32>, tensor<?x3xf32>, tensor<2x3xf32>
}

// -----

// CHECK-LABEL: func.func @chains
// CHECK-SAME: (%[[X:.+]]: tensor<2x3x4xf32>)
func.func @chains(%x: tensor<2x3x4xf32>) -> (tensor<24xf32>, tensor<4x2x3xf32>, tensor<2x3x4xf32>) {
  // CHECK: %[[R:.+]] = kiln.reshape %[[X]] : tensor<2x3x4xf32> -> tensor<24xf32>
  %0 = kiln.reshape %x : tensor<2x3x4xf32> -> tensor<6x4xf32>
  %1 = kiln.reshape %0 : tensor<6x4xf32> -> tensor<24xf32>
  // transpose(transpose(x, [0, 2, 1]), [1, 0, 2]) is transpose(x, [2, 0, 1]).
  // CHECK: %[[T:.+]] = kiln.transpose %[[X]] [2, 0, 1] : tensor<2x3x4xf32> -> tensor<4x2x3xf32>
  %2 = kiln.transpose %x [0, 2, 1] : tensor<2x3x4xf32> -> tensor<2x4x3xf32>
  %3 = kiln.transpose %2 [1, 0, 2] : tensor<2x4x3xf32> -> tensor<4x2x3xf32>
  // Two transposes that undo each other vanish.
  %4 = kiln.transpose %x [0, 2, 1] : tensor<2x3x4xf32> -> tensor<2x4x3xf32>
  %5 = kiln.transpose %4 [0, 2, 1] : tensor<2x4x3xf32> -> tensor<2x3x4xf32>
  // CHECK: return %[[R]], %[[T]], %[[X]]
  return %1, %3, %5 : tensor<24xf32>, tensor<4x2x3xf32>, tensor<2x3x4xf32>
}

// -----

// Static shape computations fold to constants; dynamic ones stay.
// CHECK-LABEL: func.func @shape_of
func.func @shape_of(%x: tensor<2x7x5xf32>, %y: tensor<?x5xf32>) -> (tensor<3xi64>, tensor<2xi64>) {
  // CHECK-DAG: %[[C:.+]] = arith.constant dense<[2, 7, 5]> : tensor<3xi64>
  // CHECK-DAG: %[[D:.+]] = kiln.shape_of %{{.+}} : tensor<?x5xf32> -> tensor<2xi64>
  %0 = kiln.shape_of %x : tensor<2x7x5xf32> -> tensor<3xi64>
  %1 = kiln.shape_of %y : tensor<?x5xf32> -> tensor<2xi64>
  // CHECK: return %[[C]], %[[D]]
  return %0, %1 : tensor<3xi64>, tensor<2xi64>
}
