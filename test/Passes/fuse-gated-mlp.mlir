// RUN: kiln-opt %s --kiln-fuse-gated-mlp --split-input-file | FileCheck %s
// The pipeline order: SiLU spelled x * sigmoid(x) is named first.
// RUN: kiln-opt %s --kiln-fuse-activations --kiln-fuse-gated-mlp --split-input-file | FileCheck %s --check-prefix=PIPE

// SwiGLU as torch exports it (weights [in, out]).
// CHECK-LABEL: func.func @swiglu
// CHECK-SAME: (%[[X:[a-z0-9]+]]: tensor<?x?x64xf32>, %[[G:[a-z0-9]+]]: tensor<64x128xf32>, %[[U:[a-z0-9]+]]: tensor<64x128xf32>, %[[D:[a-z0-9]+]]: tensor<128x64xf32>)
// CHECK-NEXT: %[[Y:.+]] = kiln.gated_mlp silu %[[X]], gate(%[[G]]) up(%[[U]]) down(%[[D]]) : (tensor<?x?x64xf32>, tensor<64x128xf32>, tensor<64x128xf32>, tensor<128x64xf32>) -> tensor<?x?x64xf32>
// CHECK-NEXT: return %[[Y]]
func.func @swiglu(%x: tensor<?x?x64xf32>, %wg: tensor<64x128xf32>, %wu: tensor<64x128xf32>, %wd: tensor<128x64xf32>) -> tensor<?x?x64xf32> {
  %0 = kiln.matmul %x, %wg : tensor<?x?x64xf32>, tensor<64x128xf32> -> tensor<?x?x128xf32>
  %1 = kiln.activation silu %0 : tensor<?x?x128xf32>
  %2 = kiln.matmul %x, %wu : tensor<?x?x64xf32>, tensor<64x128xf32> -> tensor<?x?x128xf32>
  %3 = kiln.mul %1, %2 : (tensor<?x?x128xf32>, tensor<?x?x128xf32>) -> tensor<?x?x128xf32>
  %4 = kiln.matmul %3, %wd : tensor<?x?x128xf32>, tensor<128x64xf32> -> tensor<?x?x64xf32>
  return %4 : tensor<?x?x64xf32>
}

// -----

// GeGLU with output-major int4 weights (MatMulNBits): they stay quantized.
// CHECK-LABEL: func.func @geglu_quantized
// CHECK: kiln.gated_mlp gelu_tanh %{{.+}}, gate(%{{.+}}) up(%{{.+}}) down(%{{.+}}) {transpose_weights} : (tensor<?x32xf32>, !kiln.qtensor<64x32, #{{.+}}>, !kiln.qtensor<64x32, #{{.+}}>, !kiln.qtensor<32x64, #{{.+}}>) -> tensor<?x32xf32>
func.func @geglu_quantized(%x: tensor<?x32xf32>, %wg: !kiln.qtensor<64x32, #kiln.quant<storage = ui4, expressed = f32, block = [1, 32], scale = f32>>, %wu: !kiln.qtensor<64x32, #kiln.quant<storage = ui4, expressed = f32, block = [1, 32], scale = f32>>, %wd: !kiln.qtensor<32x64, #kiln.quant<storage = ui4, expressed = f32, block = [1, 32], scale = f32>>) -> tensor<?x32xf32> {
  %0 = kiln.matmul %x, %wg {transpose_b} : tensor<?x32xf32>, !kiln.qtensor<64x32, #kiln.quant<storage = ui4, expressed = f32, block = [1, 32], scale = f32>> -> tensor<?x64xf32>
  %1 = kiln.matmul %x, %wu {transpose_b} : tensor<?x32xf32>, !kiln.qtensor<64x32, #kiln.quant<storage = ui4, expressed = f32, block = [1, 32], scale = f32>> -> tensor<?x64xf32>
  %2 = kiln.activation gelu_tanh %0 : tensor<?x64xf32>
  %3 = kiln.mul %2, %1 : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x64xf32>
  %4 = kiln.matmul %3, %wd {transpose_b} : tensor<?x64xf32>, !kiln.qtensor<32x64, #kiln.quant<storage = ui4, expressed = f32, block = [1, 32], scale = f32>> -> tensor<?x32xf32>
  return %4 : tensor<?x32xf32>
}

// -----

// SiLU spelled out, then the block.
// PIPE-LABEL: func.func @swiglu_spelled
// PIPE-NEXT: kiln.gated_mlp silu
// PIPE-NEXT: return
func.func @swiglu_spelled(%x: tensor<4x16xf32>, %wg: tensor<16x32xf32>, %wu: tensor<16x32xf32>, %wd: tensor<32x16xf32>) -> tensor<4x16xf32> {
  %0 = kiln.matmul %x, %wg : tensor<4x16xf32>, tensor<16x32xf32> -> tensor<4x32xf32>
  %s = kiln.activation sigmoid %0 : tensor<4x32xf32>
  %1 = kiln.mul %0, %s : (tensor<4x32xf32>, tensor<4x32xf32>) -> tensor<4x32xf32>
  %2 = kiln.matmul %x, %wu : tensor<4x16xf32>, tensor<16x32xf32> -> tensor<4x32xf32>
  %3 = kiln.mul %1, %2 : (tensor<4x32xf32>, tensor<4x32xf32>) -> tensor<4x32xf32>
  %4 = kiln.matmul %3, %wd : tensor<4x32xf32>, tensor<32x16xf32> -> tensor<4x16xf32>
  return %4 : tensor<4x16xf32>
}

// -----

// Near-miss: gate and up read different inputs. The GLU still forms (it is
// one), the block does not.
// CHECK-LABEL: func.func @different_inputs
// CHECK: kiln.glu silu
// CHECK-NOT: kiln.gated_mlp
func.func @different_inputs(%x: tensor<4x16xf32>, %y: tensor<4x16xf32>, %wg: tensor<16x32xf32>, %wu: tensor<16x32xf32>, %wd: tensor<32x16xf32>) -> tensor<4x16xf32> {
  %0 = kiln.matmul %x, %wg : tensor<4x16xf32>, tensor<16x32xf32> -> tensor<4x32xf32>
  %1 = kiln.activation silu %0 : tensor<4x32xf32>
  %2 = kiln.matmul %y, %wu : tensor<4x16xf32>, tensor<16x32xf32> -> tensor<4x32xf32>
  %3 = kiln.mul %1, %2 : (tensor<4x32xf32>, tensor<4x32xf32>) -> tensor<4x32xf32>
  %4 = kiln.matmul %3, %wd : tensor<4x32xf32>, tensor<32x16xf32> -> tensor<4x16xf32>
  return %4 : tensor<4x16xf32>
}

// -----

// Near-misses: a biased up projection, and an activation times a
// non-projection (not a GLU at all).
// CHECK-LABEL: func.func @near_misses
// CHECK-NOT: kiln.gated_mlp
// CHECK: kiln.glu silu
// CHECK-NOT: kiln.glu
// CHECK: return
func.func @near_misses(%x: tensor<4x16xf32>, %wg: tensor<16x32xf32>, %wu: tensor<16x32xf32>, %b: tensor<32xf32>, %wd: tensor<32x16xf32>, %z: tensor<4x32xf32>) -> (tensor<4x16xf32>, tensor<4x32xf32>) {
  %0 = kiln.matmul %x, %wg : tensor<4x16xf32>, tensor<16x32xf32> -> tensor<4x32xf32>
  %1 = kiln.activation silu %0 : tensor<4x32xf32>
  %2 = kiln.matmul %x, %wu bias(%b) : tensor<4x16xf32>, tensor<16x32xf32>, tensor<32xf32> -> tensor<4x32xf32>
  %3 = kiln.mul %1, %2 : (tensor<4x32xf32>, tensor<4x32xf32>) -> tensor<4x32xf32>
  %4 = kiln.matmul %3, %wd : tensor<4x32xf32>, tensor<32x16xf32> -> tensor<4x16xf32>
  %5 = kiln.matmul %x, %wg : tensor<4x16xf32>, tensor<16x32xf32> -> tensor<4x32xf32>
  %6 = kiln.activation silu %5 : tensor<4x32xf32>
  %7 = kiln.mul %6, %z : (tensor<4x32xf32>, tensor<4x32xf32>) -> tensor<4x32xf32>
  return %4, %7 : tensor<4x16xf32>, tensor<4x32xf32>
}

// -----

// Phi-3's fused gate/up projection, chunked in two: gate_up(...).
// CHECK-LABEL: func.func @fused_gate_up
// CHECK-SAME: (%[[X:[a-z0-9]+]]: tensor<?x?x32xf32>, %[[GU:[a-z0-9]+]]: tensor<32x96xf32>, %[[D:[a-z0-9]+]]: tensor<48x32xf32>)
// CHECK-NEXT: %[[Y:.+]] = kiln.gated_mlp silu %[[X]], gate_up(%[[GU]]) down(%[[D]]) : (tensor<?x?x32xf32>, tensor<32x96xf32>, tensor<48x32xf32>) -> tensor<?x?x32xf32>
// CHECK-NEXT: return %[[Y]]
func.func @fused_gate_up(%x: tensor<?x?x32xf32>, %wgu: tensor<32x96xf32>, %wd: tensor<48x32xf32>) -> tensor<?x?x32xf32> {
  %0 = kiln.matmul %x, %wgu : tensor<?x?x32xf32>, tensor<32x96xf32> -> tensor<?x?x96xf32>
  %g = kiln.slice %0 {axes = array<i64: -1>, ends = array<i64: 48>, starts = array<i64: 0>, steps = array<i64: 1>} : tensor<?x?x96xf32> -> tensor<?x?x48xf32>
  %u = kiln.slice %0 {axes = array<i64: -1>, ends = array<i64: 96>, starts = array<i64: 48>, steps = array<i64: 1>} : tensor<?x?x96xf32> -> tensor<?x?x48xf32>
  %a = kiln.activation silu %g : tensor<?x?x48xf32>
  %h = kiln.mul %u, %a : (tensor<?x?x48xf32>, tensor<?x?x48xf32>) -> tensor<?x?x48xf32>
  %y = kiln.matmul %h, %wd : tensor<?x?x48xf32>, tensor<48x32xf32> -> tensor<?x?x32xf32>
  return %y : tensor<?x?x32xf32>
}

// -----

// Near-miss: the activation on the second half is not kiln.glu's order.
// CHECK-LABEL: func.func @fused_gate_up_swapped
// CHECK-NOT: kiln.glu
// CHECK-NOT: kiln.gated_mlp
// CHECK: return
func.func @fused_gate_up_swapped(%x: tensor<4x32xf32>, %wgu: tensor<32x96xf32>, %wd: tensor<48x32xf32>) -> tensor<4x32xf32> {
  %0 = kiln.matmul %x, %wgu : tensor<4x32xf32>, tensor<32x96xf32> -> tensor<4x96xf32>
  %g = kiln.slice %0 {axes = array<i64: 1>, ends = array<i64: 48>, starts = array<i64: 0>, steps = array<i64: 1>} : tensor<4x96xf32> -> tensor<4x48xf32>
  %u = kiln.slice %0 {axes = array<i64: 1>, ends = array<i64: 96>, starts = array<i64: 48>, steps = array<i64: 1>} : tensor<4x96xf32> -> tensor<4x48xf32>
  %a = kiln.activation silu %u : tensor<4x48xf32>
  %h = kiln.mul %g, %a : (tensor<4x48xf32>, tensor<4x48xf32>) -> tensor<4x48xf32>
  %y = kiln.matmul %h, %wd : tensor<4x48xf32>, tensor<48x32xf32> -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}
