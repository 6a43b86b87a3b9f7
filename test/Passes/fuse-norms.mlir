// RUN: kiln-opt %s --kiln-fuse-norms --split-input-file | FileCheck %s
// RUN: kiln-opt %s --pass-pipeline='builtin.module(func.func(kiln-fuse-norms))' --split-input-file | FileCheck %s
// Fusing what kiln-decompose wrote gives the composite op back.
// RUN: kiln-opt %s --kiln-decompose=ops=rms_norm,layer_norm --kiln-fuse-norms --canonicalize --split-input-file | FileCheck %s --check-prefix=ROUND

// TorchScript's RMSNorm: pow, mean, add eps, sqrt, 1/sqrt, mul, then weight.
// CHECK-LABEL: func.func @rms_torchscript
// CHECK-SAME: (%[[X:[a-z0-9]+]]: tensor<?x?x64xf32>, %[[W:[a-z0-9]+]]: tensor<64xf32>)
// CHECK-NEXT: %[[Y:.+]] = kiln.rms_norm %[[X]], %[[W]] {epsilon = 9.99999997E-7 : f32} : tensor<?x?x64xf32>, tensor<64xf32> -> tensor<?x?x64xf32>
// CHECK-NEXT: return %[[Y]]
func.func @rms_torchscript(%x: tensor<?x?x64xf32>, %w: tensor<64xf32>) -> tensor<?x?x64xf32> {
  %two = arith.constant dense<2.0> : tensor<f32>
  %eps = arith.constant dense<1.0e-6> : tensor<f32>
  %one = arith.constant dense<1.0> : tensor<f32>
  %0 = kiln.pow %x, %two : (tensor<?x?x64xf32>, tensor<f32>) -> tensor<?x?x64xf32>
  %1 = kiln.reduce mean %0 {axes = array<i64: 2>, keep_dims} : tensor<?x?x64xf32> -> tensor<?x?x1xf32>
  %2 = kiln.add %1, %eps : (tensor<?x?x1xf32>, tensor<f32>) -> tensor<?x?x1xf32>
  %3 = kiln.sqrt %2 : tensor<?x?x1xf32>
  %4 = kiln.div %one, %3 : (tensor<f32>, tensor<?x?x1xf32>) -> tensor<?x?x1xf32>
  %5 = kiln.mul %x, %4 : (tensor<?x?x64xf32>, tensor<?x?x1xf32>) -> tensor<?x?x64xf32>
  %6 = kiln.mul %w, %5 : (tensor<64xf32>, tensor<?x?x64xf32>) -> tensor<?x?x64xf32>
  return %6 : tensor<?x?x64xf32>
}

// -----

// Dynamo's: x * x, eps first in the add, reciprocal(sqrt), weight on the right.
// CHECK-LABEL: func.func @rms_dynamo
// CHECK: kiln.rms_norm %{{.+}}, %{{.+}} {epsilon = 9.99999974E-6 : f32}
// CHECK-NOT: kiln.reduce
func.func @rms_dynamo(%x: tensor<2x5x32xf32>, %w: tensor<32xf32>) -> tensor<2x5x32xf32> {
  %eps = arith.constant dense<1.0e-5> : tensor<1xf32>
  %0 = kiln.mul %x, %x : (tensor<2x5x32xf32>, tensor<2x5x32xf32>) -> tensor<2x5x32xf32>
  %1 = kiln.reduce mean %0 {axes = array<i64: -1>, keep_dims} : tensor<2x5x32xf32> -> tensor<2x5x1xf32>
  %2 = kiln.add %eps, %1 : (tensor<1xf32>, tensor<2x5x1xf32>) -> tensor<2x5x1xf32>
  %3 = kiln.sqrt %2 : tensor<2x5x1xf32>
  %4 = kiln.reciprocal %3 : tensor<2x5x1xf32>
  %5 = kiln.mul %4, %x : (tensor<2x5x1xf32>, tensor<2x5x32xf32>) -> tensor<2x5x32xf32>
  %6 = kiln.mul %5, %w : (tensor<2x5x32xf32>, tensor<32xf32>) -> tensor<2x5x32xf32>
  return %6 : tensor<2x5x32xf32>
}

// -----

// Hugging Face's bf16 model: an f32 island (cast in, rsqrt, cast back), the
// weight applied in bf16. The fused op reads the bf16 input directly.
// CHECK-LABEL: func.func @rms_f32_island
// CHECK-SAME: (%[[X:[a-z0-9]+]]: tensor<?x16xbf16>, %[[W:[a-z0-9]+]]: tensor<16xbf16>)
// CHECK-NEXT: %[[Y:.+]] = kiln.rms_norm %[[X]], %[[W]] {epsilon = 9.99999997E-7 : f32} : tensor<?x16xbf16>, tensor<16xbf16> -> tensor<?x16xbf16>
// CHECK-NEXT: return %[[Y]]
func.func @rms_f32_island(%x: tensor<?x16xbf16>, %w: tensor<16xbf16>) -> tensor<?x16xbf16> {
  %two = arith.constant dense<2.0> : tensor<f32>
  %eps = arith.constant dense<1.0e-6> : tensor<f32>
  %0 = kiln.cast %x : tensor<?x16xbf16> to tensor<?x16xf32>
  %1 = kiln.pow %0, %two : (tensor<?x16xf32>, tensor<f32>) -> tensor<?x16xf32>
  %2 = kiln.reduce mean %1 {axes = array<i64: 1>, keep_dims} : tensor<?x16xf32> -> tensor<?x1xf32>
  %3 = kiln.add %2, %eps : (tensor<?x1xf32>, tensor<f32>) -> tensor<?x1xf32>
  %4 = kiln.rsqrt %3 : tensor<?x1xf32>
  %5 = kiln.mul %0, %4 : (tensor<?x16xf32>, tensor<?x1xf32>) -> tensor<?x16xf32>
  %6 = kiln.cast %5 : tensor<?x16xf32> to tensor<?x16xbf16>
  %7 = kiln.mul %w, %6 : (tensor<16xbf16>, tensor<?x16xbf16>) -> tensor<?x16xbf16>
  return %7 : tensor<?x16xbf16>
}

// -----

// Division by the square root instead of a product with its inverse.
// CHECK-LABEL: func.func @rms_divide
// CHECK: kiln.rms_norm
func.func @rms_divide(%x: tensor<4x8xf32>, %w: tensor<8xf32>) -> tensor<4x8xf32> {
  %two = arith.constant dense<2.0> : tensor<f32>
  %eps = arith.constant dense<1.0e-6> : tensor<f32>
  %0 = kiln.pow %x, %two : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %1 = kiln.reduce mean %0 {axes = array<i64: 1>, keep_dims} : tensor<4x8xf32> -> tensor<4x1xf32>
  %2 = kiln.add %1, %eps : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %3 = kiln.sqrt %2 : tensor<4x1xf32>
  %4 = kiln.div %x, %3 : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  %5 = kiln.mul %4, %w : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return %5 : tensor<4x8xf32>
}

// -----

// Near-miss: eps added after the square root is another function.
// CHECK-LABEL: func.func @rms_eps_outside_sqrt
// CHECK-NOT: kiln.rms_norm
// CHECK: kiln.sqrt
func.func @rms_eps_outside_sqrt(%x: tensor<4x8xf32>, %w: tensor<8xf32>) -> tensor<4x8xf32> {
  %two = arith.constant dense<2.0> : tensor<f32>
  %eps = arith.constant dense<1.0e-6> : tensor<f32>
  %one = arith.constant dense<1.0> : tensor<f32>
  %0 = kiln.pow %x, %two : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %1 = kiln.reduce mean %0 {axes = array<i64: 1>, keep_dims} : tensor<4x8xf32> -> tensor<4x1xf32>
  %2 = kiln.sqrt %1 : tensor<4x1xf32>
  %3 = kiln.add %2, %eps : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %4 = kiln.div %one, %3 : (tensor<f32>, tensor<4x1xf32>) -> tensor<4x1xf32>
  %5 = kiln.mul %x, %4 : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  %6 = kiln.mul %5, %w : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return %6 : tensor<4x8xf32>
}

// -----

// Near-misses: the statistic over another axis, of another tensor, a sum
// instead of a mean, a cube instead of a square, and a per-row "weight".
// CHECK-LABEL: func.func @rms_near_misses
// CHECK-NOT: kiln.rms_norm
// CHECK: return
func.func @rms_near_misses(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>, %w: tensor<8xf32>, %r: tensor<4x1xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) {
  %two = arith.constant dense<2.0> : tensor<f32>
  %three = arith.constant dense<3.0> : tensor<f32>
  %eps = arith.constant dense<1.0e-6> : tensor<f32>
  %sq = kiln.pow %x, %two : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  // Mean over axis 0.
  %a0 = kiln.reduce mean %sq {axes = array<i64: 0>, keep_dims} : tensor<4x8xf32> -> tensor<1x8xf32>
  %a1 = kiln.add %a0, %eps : (tensor<1x8xf32>, tensor<f32>) -> tensor<1x8xf32>
  %a2 = kiln.rsqrt %a1 : tensor<1x8xf32>
  %a3 = kiln.mul %x, %a2 : (tensor<4x8xf32>, tensor<1x8xf32>) -> tensor<4x8xf32>
  %a = kiln.mul %a3, %w : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  // Statistic of x, scaling of y.
  %m = kiln.reduce mean %sq {axes = array<i64: 1>, keep_dims} : tensor<4x8xf32> -> tensor<4x1xf32>
  %b1 = kiln.add %m, %eps : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %b2 = kiln.rsqrt %b1 : tensor<4x1xf32>
  %b3 = kiln.mul %y, %b2 : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  %b = kiln.mul %b3, %w : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  // Sum, not mean.
  %c0 = kiln.reduce sum %sq {axes = array<i64: 1>, keep_dims} : tensor<4x8xf32> -> tensor<4x1xf32>
  %c1 = kiln.add %c0, %eps : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %c2 = kiln.rsqrt %c1 : tensor<4x1xf32>
  %c3 = kiln.mul %x, %c2 : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  %c = kiln.mul %c3, %w : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  // x^3.
  %cube = kiln.pow %x, %three : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %d0 = kiln.reduce mean %cube {axes = array<i64: 1>, keep_dims} : tensor<4x8xf32> -> tensor<4x1xf32>
  %d1 = kiln.add %d0, %eps : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %d2 = kiln.rsqrt %d1 : tensor<4x1xf32>
  %d3 = kiln.mul %x, %d2 : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  %d = kiln.mul %d3, %w : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  // A per-row factor is not a channel weight.
  %e2 = kiln.rsqrt %b1 : tensor<4x1xf32>
  %e3 = kiln.mul %x, %e2 : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  %e = kiln.mul %e3, %r : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  return %a, %b, %c, %d, %e : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
}

// -----

// A negative eps is not a norm's.
// CHECK-LABEL: func.func @rms_negative_eps
// CHECK-NOT: kiln.rms_norm
func.func @rms_negative_eps(%x: tensor<4x8xf32>, %w: tensor<8xf32>) -> tensor<4x8xf32> {
  %two = arith.constant dense<2.0> : tensor<f32>
  %eps = arith.constant dense<-1.0e-6> : tensor<f32>
  %0 = kiln.pow %x, %two : (tensor<4x8xf32>, tensor<f32>) -> tensor<4x8xf32>
  %1 = kiln.reduce mean %0 {axes = array<i64: 1>, keep_dims} : tensor<4x8xf32> -> tensor<4x1xf32>
  %2 = kiln.add %1, %eps : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %3 = kiln.rsqrt %2 : tensor<4x1xf32>
  %4 = kiln.mul %x, %3 : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
  %5 = kiln.mul %4, %w : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  return %5 : tensor<4x8xf32>
}

// -----

// LayerNorm with bias; the location of the fused op fuses the nodes'.
// CHECK-LABEL: func.func @layer_norm_bias
// CHECK-SAME: (%[[X:[a-z0-9]+]]: tensor<?x32xf32>, %[[W:[a-z0-9]+]]: tensor<32xf32>, %[[B:[a-z0-9]+]]: tensor<32xf32>)
// CHECK-NEXT: %[[Y:.+]] = kiln.layer_norm %[[X]], %[[W]], %[[B]] {epsilon = 9.99999974E-6 : f32}
// CHECK-NEXT: return %[[Y]]
// ROUND-LABEL: func.func @layer_norm_bias
// ROUND-NEXT: kiln.layer_norm %{{.+}}, %{{.+}}, %{{.+}} {epsilon = 9.99999974E-6 : f32}
// ROUND-NEXT: return
func.func @layer_norm_bias(%x: tensor<?x32xf32>, %w: tensor<32xf32>, %b: tensor<32xf32>) -> tensor<?x32xf32> {
  %two = arith.constant dense<2.0> : tensor<f32>
  %eps = arith.constant dense<1.0e-5> : tensor<f32>
  %0 = kiln.reduce mean %x {axes = array<i64: 1>, keep_dims} : tensor<?x32xf32> -> tensor<?x1xf32>
  %1 = kiln.sub %x, %0 : (tensor<?x32xf32>, tensor<?x1xf32>) -> tensor<?x32xf32>
  %2 = kiln.pow %1, %two : (tensor<?x32xf32>, tensor<f32>) -> tensor<?x32xf32>
  %3 = kiln.reduce mean %2 {axes = array<i64: 1>, keep_dims} : tensor<?x32xf32> -> tensor<?x1xf32>
  %4 = kiln.add %3, %eps : (tensor<?x1xf32>, tensor<f32>) -> tensor<?x1xf32>
  %5 = kiln.sqrt %4 : tensor<?x1xf32>
  %6 = kiln.div %1, %5 : (tensor<?x32xf32>, tensor<?x1xf32>) -> tensor<?x32xf32>
  %7 = kiln.mul %6, %w : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %8 = kiln.add %7, %b : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  return %8 : tensor<?x32xf32>
}

// -----

// Near-miss: centered by the mean of another tensor.
// CHECK-LABEL: func.func @layer_norm_wrong_mean
// CHECK-NOT: kiln.layer_norm
func.func @layer_norm_wrong_mean(%x: tensor<4x32xf32>, %y: tensor<4x32xf32>, %w: tensor<32xf32>) -> tensor<4x32xf32> {
  %eps = arith.constant dense<1.0e-5> : tensor<f32>
  %0 = kiln.reduce mean %y {axes = array<i64: 1>, keep_dims} : tensor<4x32xf32> -> tensor<4x1xf32>
  %1 = kiln.sub %x, %0 : (tensor<4x32xf32>, tensor<4x1xf32>) -> tensor<4x32xf32>
  %2 = kiln.mul %1, %1 : (tensor<4x32xf32>, tensor<4x32xf32>) -> tensor<4x32xf32>
  %3 = kiln.reduce mean %2 {axes = array<i64: 1>, keep_dims} : tensor<4x32xf32> -> tensor<4x1xf32>
  %4 = kiln.add %3, %eps : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %5 = kiln.rsqrt %4 : tensor<4x1xf32>
  %6 = kiln.mul %1, %5 : (tensor<4x32xf32>, tensor<4x1xf32>) -> tensor<4x32xf32>
  %7 = kiln.mul %6, %w : (tensor<4x32xf32>, tensor<32xf32>) -> tensor<4x32xf32>
  return %7 : tensor<4x32xf32>
}

// -----

// The composite op is untouched.
// ROUND-LABEL: func.func @rms_round_trip
// ROUND-NEXT: kiln.rms_norm %{{.+}}, %{{.+}} {epsilon = 9.99999997E-7 : f32} : tensor<3x16xbf16>, tensor<16xbf16> -> tensor<3x16xbf16>
// ROUND-NEXT: return
func.func @rms_round_trip(%x: tensor<3x16xbf16>, %w: tensor<16xbf16>) -> tensor<3x16xbf16> {
  %0 = kiln.rms_norm %x, %w {epsilon = 1.0e-06 : f32} : tensor<3x16xbf16>, tensor<16xbf16> -> tensor<3x16xbf16>
  return %0 : tensor<3x16xbf16>
}

// -----

// The residual add before a norm joins it; the stream after it reads the
// fused op's sum.
// CHECK-LABEL: func.func @add_rms_norm
// CHECK-SAME: (%[[H:[a-z0-9]+]]: tensor<?x?x64xf32>, %[[A:[a-z0-9]+]]: tensor<?x?x64xf32>, %[[W:[a-z0-9]+]]: tensor<64xf32>)
// CHECK-NEXT: %[[S:.+]], %[[N:.+]] = kiln.add_rms_norm %[[H]], %[[A]], %[[W]] {epsilon = 9.99999997E-7 : f32} : tensor<?x?x64xf32>, tensor<64xf32>
// CHECK-NEXT: return %[[S]], %[[N]]
func.func @add_rms_norm(%h: tensor<?x?x64xf32>, %attn: tensor<?x?x64xf32>, %w: tensor<64xf32>) -> (tensor<?x?x64xf32>, tensor<?x?x64xf32>) {
  %sum = kiln.add %h, %attn : (tensor<?x?x64xf32>, tensor<?x?x64xf32>) -> tensor<?x?x64xf32>
  %n = kiln.rms_norm %sum, %w {epsilon = 1.0e-06 : f32} : tensor<?x?x64xf32>, tensor<64xf32> -> tensor<?x?x64xf32>
  return %sum, %n : tensor<?x?x64xf32>, tensor<?x?x64xf32>
}

// -----

// Near-miss: a broadcast add (a bias) is not a residual add.
// CHECK-LABEL: func.func @bias_then_norm
// CHECK-NOT: kiln.add_rms_norm
// CHECK: kiln.rms_norm
func.func @bias_then_norm(%h: tensor<4x64xf32>, %b: tensor<64xf32>, %w: tensor<64xf32>) -> tensor<4x64xf32> {
  %sum = kiln.add %h, %b : (tensor<4x64xf32>, tensor<64xf32>) -> tensor<4x64xf32>
  %n = kiln.rms_norm %sum, %w {epsilon = 1.0e-06 : f32} : tensor<4x64xf32>, tensor<64xf32> -> tensor<4x64xf32>
  return %n : tensor<4x64xf32>
}
