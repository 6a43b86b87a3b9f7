// RUN: kiln-opt %s --kiln-fuse-elementwise --split-input-file | FileCheck %s
// RUN: kiln-opt %s --kiln-fuse-elementwise --kiln-fuse-elementwise --split-input-file | FileCheck %s

// Gemma's logit soft-cap: x / c, tanh, * c is one pass; the splat constant
// moves into the body.
// CHECK-LABEL: func.func @softcap
// CHECK: %[[E:.+]] = kiln.elementwise %arg0 : (tensor<?x256xf32>) -> tensor<?x256xf32> {
// CHECK: ^bb0(%[[A:.+]]: f32):
// CHECK-DAG: %[[C:.+]] = arith.constant 3.000000e+01 : f32
// CHECK: %[[D:.+]] = arith.divf %[[A]], %[[C]] : f32
// CHECK: %[[T:.+]] = math.tanh %[[D]] : f32
// CHECK: %[[M:.+]] = arith.mulf %[[T]], %{{.+}} : f32
// CHECK: kiln.yield %[[M]] : f32
// CHECK-NOT: kiln.tanh
// CHECK: return %[[E]]
func.func @softcap(%x: tensor<?x256xf32>) -> tensor<?x256xf32> {
  %c = arith.constant dense<30.0> : tensor<f32>
  %0 = kiln.div %x, %c : (tensor<?x256xf32>, tensor<f32>) -> tensor<?x256xf32>
  %1 = kiln.tanh %0 : tensor<?x256xf32>
  %2 = kiln.mul %1, %c : (tensor<?x256xf32>, tensor<f32>) -> tensor<?x256xf32>
  return %2 : tensor<?x256xf32>
}

// -----

// A tree: two leaves broadcast to the root's shape; a float cast and a
// reciprocal inside; every input appears once even when read twice.
// CHECK-LABEL: func.func @tree
// CHECK: kiln.elementwise %arg0, %arg1 : (tensor<?x8xf16>, tensor<8xf32>) -> tensor<?x8xf32> {
// CHECK: ^bb0(%[[X:.+]]: f16, %[[S:.+]]: f32):
// CHECK: %[[W:.+]] = arith.extf %[[X]] : f16 to f32
// CHECK: arith.mulf %[[W]], %[[S]] : f32
// CHECK: arith.divf %{{.+}}, %[[S]] : f32
// CHECK: math.exp
// CHECK: arith.addf
// CHECK-NEXT: kiln.yield
// CHECK-NOT: kiln.
// CHECK: return
func.func @tree(%x: tensor<?x8xf16>, %s: tensor<8xf32>) -> tensor<?x8xf32> {
  %w = kiln.cast %x : tensor<?x8xf16> to tensor<?x8xf32>
  %a = kiln.mul %w, %s : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %r = kiln.reciprocal %s : tensor<8xf32>
  %e = kiln.exp %r : tensor<8xf32>
  %y = kiln.add %a, %e : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  return %y : tensor<?x8xf32>
}

// -----

// Near-miss: an inner value has another reader, so the chain stops there
// (fusing it would compute it twice or lose it). Here the tanh is read twice:
// its consumers are two chains of their own, and the division stays whole
// with it.
// CHECK-LABEL: func.func @shared
// CHECK: %[[D:.+]] = kiln.elementwise %arg0 :
// CHECK: arith.divf
// CHECK: math.tanh
// CHECK: kiln.neg %[[D]]
// CHECK: kiln.exp %[[D]]
func.func @shared(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %c = arith.constant dense<2.0> : tensor<f32>
  %0 = kiln.div %x, %c : (tensor<4xf32>, tensor<f32>) -> tensor<4xf32>
  %1 = kiln.tanh %0 : tensor<4xf32>
  %2 = kiln.neg %1 : tensor<4xf32>
  %3 = kiln.exp %1 : tensor<4xf32>
  return %2, %3 : tensor<4xf32>, tensor<4xf32>
}

// -----

// Near-misses: a lone op stays itself; integer arithmetic (positions) and
// boolean logic are not float chains; a non-scalar constant stays an input.
// CHECK-LABEL: func.func @not_chains
// CHECK: kiln.tanh %arg0
// CHECK: kiln.add %arg1, %{{.+}} : (tensor<4xi64>, tensor<i64>)
// CHECK: kiln.mul %{{.+}}, %{{.+}} : (tensor<4xi64>, tensor<i64>)
// CHECK: kiln.elementwise %arg0, %{{.+}} : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
func.func @not_chains(%x: tensor<4xf32>, %p: tensor<4xi64>) -> (tensor<4xf32>, tensor<4xi64>, tensor<4xf32>) {
  %t = kiln.tanh %x : tensor<4xf32>
  %one = arith.constant dense<1> : tensor<i64>
  %q = kiln.add %p, %one : (tensor<4xi64>, tensor<i64>) -> tensor<4xi64>
  %r = kiln.mul %q, %one : (tensor<4xi64>, tensor<i64>) -> tensor<4xi64>
  %v = arith.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>
  %a = kiln.add %x, %v : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %b = kiln.sqrt %a : tensor<4xf32>
  return %t, %r, %b : tensor<4xf32>, tensor<4xi64>, tensor<4xf32>
}

// -----

// An existing kiln.elementwise extends with its neighbours (the pass is
// idempotent: run twice, one op).
// CHECK-LABEL: func.func @extend
// CHECK: kiln.elementwise %arg0 : (tensor<4xbf16>) -> tensor<4xbf16> {
// CHECK: math.sin
// CHECK: math.cos
// CHECK: arith.negf
// CHECK-NOT: kiln.elementwise
func.func @extend(%x: tensor<4xbf16>) -> tensor<4xbf16> {
  %s = kiln.sin %x : tensor<4xbf16>
  %e = kiln.elementwise %s : (tensor<4xbf16>) -> tensor<4xbf16> {
  ^bb0(%a: bf16):
    %c = math.cos %a : bf16
    kiln.yield %c : bf16
  }
  %n = kiln.neg %e : tensor<4xbf16>
  return %n : tensor<4xbf16>
}
