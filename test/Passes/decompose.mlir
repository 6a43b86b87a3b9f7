// RUN: kiln-opt %s --kiln-decompose --split-input-file | FileCheck %s
// RUN: kiln-opt %s --pass-pipeline='builtin.module(func.func(kiln-decompose{ops=gated_mlp}))' --split-input-file | FileCheck %s --check-prefix=ONLY
// RUN: not kiln-opt %s --kiln-decompose=ops=attention 2>&1 | FileCheck %s --check-prefix=BAD

// BAD: kiln-decompose: unknown op 'attention' in 'ops'

// CHECK-LABEL: func.func @rms_norm
// CHECK-SAME: (%[[X:.+]]: tensor<2x8xbf16>, %[[W:.+]]: tensor<8xbf16>)
// CHECK-DAG: %[[EPS:.+]] = arith.constant dense<9.99999997E-7> : tensor<f32>
// CHECK-DAG: %[[XF:.+]] = kiln.cast %[[X]] : tensor<2x8xbf16> to tensor<2x8xf32>
// CHECK: %[[SQ:.+]] = kiln.mul %[[XF]], %[[XF]]
// CHECK: %[[MS:.+]] = kiln.reduce mean %[[SQ]] {axes = array<i64: 1>, keep_dims} : tensor<2x8xf32> -> tensor<2x1xf32>
// CHECK: %[[ADD:.+]] = kiln.add %[[MS]], %[[EPS]]
// CHECK: %[[INV:.+]] = kiln.rsqrt %[[ADD]] : tensor<2x1xf32>
// CHECK: %[[N:.+]] = kiln.mul %[[XF]], %[[INV]]
// CHECK: %[[WF:.+]] = kiln.cast %[[W]] : tensor<8xbf16> to tensor<8xf32>
// CHECK: %[[Y:.+]] = kiln.mul %[[N]], %[[WF]]
// CHECK: %[[R:.+]] = kiln.cast %[[Y]] : tensor<2x8xf32> to tensor<2x8xbf16>
// CHECK: return %[[R]]
// ONLY-LABEL: func.func @rms_norm
// ONLY: kiln.rms_norm
func.func @rms_norm(%x: tensor<2x8xbf16>, %w: tensor<8xbf16>) -> tensor<2x8xbf16> {
  %0 = kiln.rms_norm %x, %w {epsilon = 1.0e-06 : f32} : tensor<2x8xbf16>, tensor<8xbf16> -> tensor<2x8xbf16>
  return %0 : tensor<2x8xbf16>
}

// -----

// Normalizing over the last two dims reduces both.
// CHECK-LABEL: func.func @layer_norm
// CHECK: %[[MEAN:.+]] = kiln.reduce mean %[[X:.+]] {axes = array<i64: 1, 2>, keep_dims} : tensor<4x3x8xf32> -> tensor<4x1x1xf32>
// CHECK: %[[C:.+]] = kiln.sub %[[X]], %[[MEAN]]
// CHECK: %[[SQ:.+]] = kiln.mul %[[C]], %[[C]]
// CHECK: %[[VAR:.+]] = kiln.reduce mean %[[SQ]] {axes = array<i64: 1, 2>, keep_dims}
// CHECK: kiln.rsqrt
// CHECK: kiln.mul
// CHECK: kiln.mul
// CHECK: kiln.add
// CHECK-NOT: kiln.layer_norm
func.func @layer_norm(%x: tensor<4x3x8xf32>, %w: tensor<3x8xf32>, %b: tensor<3x8xf32>) -> tensor<4x3x8xf32> {
  %0 = kiln.layer_norm %x, %w, %b {axis = 1 : i64, epsilon = 1.0e-05 : f32} : tensor<4x3x8xf32>, tensor<3x8xf32>, tensor<3x8xf32> -> tensor<4x3x8xf32>
  return %0 : tensor<4x3x8xf32>
}

// -----

// CHECK-LABEL: func.func @softmax
// CHECK: %[[M:.+]] = kiln.reduce max %[[X:.+]] {axes = array<i64: 1>, keep_dims} : tensor<2x5x3xf32> -> tensor<2x1x3xf32>
// CHECK: %[[S:.+]] = kiln.sub %[[X]], %[[M]]
// CHECK: %[[E:.+]] = kiln.exp %[[S]]
// CHECK: %[[Z:.+]] = kiln.reduce sum %[[E]] {axes = array<i64: 1>, keep_dims}
// CHECK: kiln.div %[[E]], %[[Z]]
func.func @softmax(%x: tensor<2x5x3xf32>) -> tensor<2x5x3xf32> {
  %0 = kiln.softmax %x {axis = -2 : i64} : tensor<2x5x3xf32>
  return %0 : tensor<2x5x3xf32>
}

// -----

// CHECK-LABEL: func.func @activations
// CHECK-NOT: kiln.activation
// gelu: 0.5 * x * (1 + erf(x / sqrt(2)))
// CHECK-DAG: arith.constant dense<0.707106769> : tensor<f32>
// CHECK: kiln.erf
// relu: max(x, 0)
// CHECK: kiln.max
// gelu_tanh uses tanh
// CHECK: kiln.tanh
func.func @activations(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) {
  %0 = kiln.activation gelu %x : tensor<4xf32>
  %1 = kiln.activation relu %x : tensor<4xf32>
  %2 = kiln.activation gelu_tanh %x : tensor<4xf32>
  return %0, %1, %2 : tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
}

// -----

// A fused gate/up projection with output-major weights: one matmul, split in
// halves, silu(gate) * up, then the down projection.
// CHECK-LABEL: func.func @gated_mlp_fused
// CHECK-SAME: (%[[X:.+]]: tensor<?x16xf32>, %[[GU:.+]]: tensor<64x16xf32>, %[[D:.+]]: tensor<16x32xf32>)
// CHECK: %[[P:.+]] = kiln.matmul %[[X]], %[[GU]] {transpose_b} : tensor<?x16xf32>, tensor<64x16xf32> -> tensor<?x64xf32>
// CHECK-DAG: %[[G:.+]] = kiln.slice %[[P]] {axes = array<i64: 1>, ends = array<i64: 32>, starts = array<i64: 0>, steps = array<i64: 1>}
// CHECK-DAG: %[[U:.+]] = kiln.slice %[[P]] {axes = array<i64: 1>, ends = array<i64: 64>, starts = array<i64: 32>, steps = array<i64: 1>}
// CHECK: %[[NG:.+]] = kiln.neg %[[G]]
// CHECK: %[[SIG:.+]] = kiln.reciprocal
// CHECK: %[[ACT:.+]] = kiln.mul %[[G]], %[[SIG]]
// CHECK: %[[H:.+]] = kiln.mul %[[ACT]], %[[U]]
// CHECK: kiln.matmul %[[H]], %[[D]] {transpose_b} : tensor<?x32xf32>, tensor<16x32xf32> -> tensor<?x16xf32>
// ONLY-LABEL: func.func @gated_mlp_fused
// ONLY: %[[P:.+]] = kiln.matmul
// ONLY: %[[H:.+]] = kiln.glu silu %[[P]] : tensor<?x64xf32> -> tensor<?x32xf32>
// ONLY: kiln.matmul %[[H]]
func.func @gated_mlp_fused(%x: tensor<?x16xf32>, %gu: tensor<64x16xf32>, %d: tensor<16x32xf32>) -> tensor<?x16xf32> {
  %0 = kiln.gated_mlp silu %x, gate_up(%gu) down(%d) {transpose_weights} : (tensor<?x16xf32>, tensor<64x16xf32>, tensor<16x32xf32>) -> tensor<?x16xf32>
  return %0 : tensor<?x16xf32>
}

// -----

// CHECK-LABEL: func.func @gated_mlp_split
// CHECK: %[[G:.+]] = kiln.matmul %[[X:.+]], %{{.+}} : tensor<2x16xbf16>, tensor<16x32xbf16> -> tensor<2x32xbf16>
// CHECK: %[[U:.+]] = kiln.matmul %[[X]], %{{.+}} : tensor<2x16xbf16>, tensor<16x32xbf16> -> tensor<2x32xbf16>
// CHECK: kiln.tanh
// CHECK: kiln.matmul %{{.+}}, %{{.+}} : tensor<2x32xbf16>, tensor<32x16xbf16> -> tensor<2x16xbf16>
func.func @gated_mlp_split(%x: tensor<2x16xbf16>, %g: tensor<16x32xbf16>, %u: tensor<16x32xbf16>, %d: tensor<32x16xbf16>) -> tensor<2x16xbf16> {
  %0 = kiln.gated_mlp gelu_tanh %x, gate(%g) up(%u) down(%d) : (tensor<2x16xbf16>, tensor<16x32xbf16>, tensor<16x32xbf16>, tensor<32x16xbf16>) -> tensor<2x16xbf16>
  return %0 : tensor<2x16xbf16>
}

// -----

// Near miss: a fused glu whose width is only known at run time cannot be
// split statically, so it stays.
// CHECK-LABEL: func.func @glu_dynamic_width
// CHECK: kiln.glu silu
func.func @glu_dynamic_width(%x: tensor<2x?xf32>) -> tensor<2x?xf32> {
  %0 = kiln.glu silu %x : tensor<2x?xf32> -> tensor<2x?xf32>
  return %0 : tensor<2x?xf32>
}

// -----

// Near miss: rank-1 input has no matmul form; the op stays.
// CHECK-LABEL: func.func @gated_mlp_rank1
// CHECK: kiln.gated_mlp
func.func @gated_mlp_rank1(%x: tensor<16xf32>, %g: tensor<16x32xf32>, %d: tensor<32x16xf32>) -> tensor<16xf32> {
  %0 = kiln.gated_mlp silu %x, gate(%g) up(%g) down(%d) : (tensor<16xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>) -> tensor<16xf32>
  return %0 : tensor<16xf32>
}
