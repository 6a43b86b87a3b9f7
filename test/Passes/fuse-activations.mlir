// RUN: kiln-opt %s --kiln-fuse-activations --split-input-file | FileCheck %s

// CHECK-LABEL: func.func @silu
// CHECK-SAME: (%[[X:[a-z0-9]+]]: tensor<?x48xf32>)
// CHECK-NEXT: %[[Y:.+]] = kiln.activation silu %[[X]] : tensor<?x48xf32>
// CHECK-NEXT: return %[[Y]]
func.func @silu(%x: tensor<?x48xf32>) -> tensor<?x48xf32> {
  %0 = kiln.activation sigmoid %x : tensor<?x48xf32>
  %1 = kiln.mul %0, %x : (tensor<?x48xf32>, tensor<?x48xf32>) -> tensor<?x48xf32>
  return %1 : tensor<?x48xf32>
}

// -----

// Near-miss: sigmoid of one tensor times another is a gate, not SiLU.
// CHECK-LABEL: func.func @sigmoid_gate
// CHECK: kiln.activation sigmoid
// CHECK-NOT: silu
func.func @sigmoid_gate(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %0 = kiln.activation sigmoid %y : tensor<4x8xf32>
  %1 = kiln.mul %x, %0 : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  return %1 : tensor<4x8xf32>
}

// -----

// GPT-2's tanh GELU as TorchScript writes it: (0.5 x) (1 + tanh(k (x + c x^3))).
// CHECK-LABEL: func.func @gelu_tanh
// CHECK-SAME: (%[[X:[a-z0-9]+]]: tensor<?x?x64xf32>)
// CHECK-NEXT: %[[Y:.+]] = kiln.activation gelu_tanh %[[X]] : tensor<?x?x64xf32>
// CHECK-NEXT: return %[[Y]]
func.func @gelu_tanh(%x: tensor<?x?x64xf32>) -> tensor<?x?x64xf32> {
  %half = arith.constant dense<5.000000e-01> : tensor<f32>
  %three = arith.constant dense<3.000000e+00> : tensor<f32>
  %c = arith.constant dense<4.471500e-02> : tensor<f32>
  %k = arith.constant dense<0.797884583> : tensor<f32>
  %one = arith.constant dense<1.000000e+00> : tensor<f32>
  %0 = kiln.mul %x, %half : (tensor<?x?x64xf32>, tensor<f32>) -> tensor<?x?x64xf32>
  %1 = kiln.pow %x, %three : (tensor<?x?x64xf32>, tensor<f32>) -> tensor<?x?x64xf32>
  %2 = kiln.mul %1, %c : (tensor<?x?x64xf32>, tensor<f32>) -> tensor<?x?x64xf32>
  %3 = kiln.add %x, %2 : (tensor<?x?x64xf32>, tensor<?x?x64xf32>) -> tensor<?x?x64xf32>
  %4 = kiln.mul %3, %k : (tensor<?x?x64xf32>, tensor<f32>) -> tensor<?x?x64xf32>
  %5 = kiln.tanh %4 : tensor<?x?x64xf32>
  %6 = kiln.add %5, %one : (tensor<?x?x64xf32>, tensor<f32>) -> tensor<?x?x64xf32>
  %7 = kiln.mul %0, %6 : (tensor<?x?x64xf32>, tensor<?x?x64xf32>) -> tensor<?x?x64xf32>
  return %7 : tensor<?x?x64xf32>
}

// -----

// Other groupings: x * (0.5 * (1 + tanh(...))) with x*x*x.
// CHECK-LABEL: func.func @gelu_tanh_regrouped
// CHECK: kiln.activation gelu_tanh
// CHECK-NOT: kiln.tanh
func.func @gelu_tanh_regrouped(%x: tensor<8xf32>) -> tensor<8xf32> {
  %half = arith.constant dense<5.000000e-01> : tensor<1xf32>
  %c = arith.constant dense<4.471500e-02> : tensor<f32>
  %k = arith.constant dense<0.7978846> : tensor<f32>
  %one = arith.constant dense<1.000000e+00> : tensor<f32>
  %sq = kiln.mul %x, %x : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
  %cube = kiln.mul %x, %sq : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
  %2 = kiln.mul %c, %cube : (tensor<f32>, tensor<8xf32>) -> tensor<8xf32>
  %3 = kiln.add %2, %x : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
  %4 = kiln.mul %k, %3 : (tensor<f32>, tensor<8xf32>) -> tensor<8xf32>
  %5 = kiln.tanh %4 : tensor<8xf32>
  %6 = kiln.add %one, %5 : (tensor<f32>, tensor<8xf32>) -> tensor<8xf32>
  %7 = kiln.mul %6, %half : (tensor<8xf32>, tensor<1xf32>) -> tensor<8xf32>
  %8 = kiln.mul %x, %7 : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
  return %8 : tensor<8xf32>
}

// -----

// Near-miss: a cubic coefficient of 0.05 is some other function.
// CHECK-LABEL: func.func @gelu_tanh_wrong_constant
// CHECK-NOT: gelu_tanh
// CHECK: kiln.tanh
func.func @gelu_tanh_wrong_constant(%x: tensor<8xf32>) -> tensor<8xf32> {
  %half = arith.constant dense<5.000000e-01> : tensor<f32>
  %three = arith.constant dense<3.000000e+00> : tensor<f32>
  %c = arith.constant dense<5.000000e-02> : tensor<f32>
  %k = arith.constant dense<0.797884583> : tensor<f32>
  %one = arith.constant dense<1.000000e+00> : tensor<f32>
  %0 = kiln.mul %x, %half : (tensor<8xf32>, tensor<f32>) -> tensor<8xf32>
  %1 = kiln.pow %x, %three : (tensor<8xf32>, tensor<f32>) -> tensor<8xf32>
  %2 = kiln.mul %1, %c : (tensor<8xf32>, tensor<f32>) -> tensor<8xf32>
  %3 = kiln.add %x, %2 : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
  %4 = kiln.mul %3, %k : (tensor<8xf32>, tensor<f32>) -> tensor<8xf32>
  %5 = kiln.tanh %4 : tensor<8xf32>
  %6 = kiln.add %5, %one : (tensor<8xf32>, tensor<f32>) -> tensor<8xf32>
  %7 = kiln.mul %0, %6 : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
  return %7 : tensor<8xf32>
}

// -----

// The erf GELU, with the division by sqrt(2) spelled as a division.
// CHECK-LABEL: func.func @gelu_erf
// CHECK-SAME: (%[[X:[a-z0-9]+]]: tensor<4x8xf32>)
// CHECK-NEXT: %[[Y:.+]] = kiln.activation gelu %[[X]] : tensor<4x8xf32>
// CHECK-NEXT: return %[[Y]]
func.func @gelu_erf(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %half = arith.constant dense<5.000000e-01> : tensor<f32>
  %sqrt2 = arith.constant dense<1.41421354> : tensor<f32>
  %one = arith.constant dense<1.000000e+00> : tensor<f32>
  %0 = kiln.div %x, %sqrt2 : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %1 = kiln.erf %0 : tensor<4x8xf32>
  %2 = kiln.add %1, %one : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %3 = kiln.mul %x, %2 : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %4 = kiln.mul %3, %half : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  return %4 : tensor<4x8xf32>
}

// -----

// Near-miss: erf of another tensor.
// CHECK-LABEL: func.func @gelu_erf_other_input
// CHECK-NOT: kiln.activation gelu
// CHECK: kiln.erf
func.func @gelu_erf_other_input(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>) -> tensor<4x8xf32> {
  %half = arith.constant dense<5.000000e-01> : tensor<f32>
  %r = arith.constant dense<0.707106769> : tensor<f32>
  %one = arith.constant dense<1.000000e+00> : tensor<f32>
  %0 = kiln.mul %y, %r : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %1 = kiln.erf %0 : tensor<4x8xf32>
  %2 = kiln.add %1, %one : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %3 = kiln.mul %x, %2 : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %4 = kiln.mul %3, %half : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  return %4 : tensor<4x8xf32>
}
