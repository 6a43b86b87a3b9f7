// RUN: kiln-opt %s --kiln-fuse-rope --split-input-file | FileCheck %s
// The transposes around the fused op cancel against the head split.
// RUN: kiln-opt %s --kiln-fuse-rope --canonicalize --split-input-file | FileCheck %s --check-prefix=CANON
// The fused forms compute what they replace: GPT-J's interleaved and Llama's
// rotate-half rotation on [B, S, H, D] heads, on random inputs.
// RUN: %python %kiln_src_root/scripts/check_equiv.py --bin %kiln_obj_root/bin %S/Inputs/rope-variants.mlir | FileCheck %s --check-prefix=EQUIV
// RUN: kiln-compile %S/Inputs/rope-variants.mlir --stop-after=graph --quiet | FileCheck %s --check-prefix=VARIANTS
// EQUIV: PASS rope-variants.mlir
// VARIANTS: kiln.rope %arg0, %{{.+}}, %{{.+}} {interleaved} : tensor<2x5x4x8xf32>, tensor<2x5x4xf32>, tensor<2x5x4xf32> -> tensor<2x5x4x8xf32>
// VARIANTS: kiln.rope %arg0, %{{.+}}, %{{.+}} : tensor<2x5x4x8xf32>, tensor<2x5x4xf32>, tensor<2x5x4xf32> -> tensor<2x5x4x8xf32>
// VARIANTS-NOT: kiln.neg

// Hugging Face Llama through TorchScript: tables from positions, cos/sin of
// concat(f, f), unsqueezed over heads.
// CHECK-LABEL: func.func @rotate_half
// CHECK-SAME: (%[[Q:[a-z0-9]+]]: tensor<?x?x4x16xf32>, %[[POS:[a-z0-9]+]]: tensor<?x?xi64>, %[[F:[a-z0-9]+]]: tensor<8xf32>)
// CHECK: %[[COS:.+]] = kiln.cos
// CHECK: %[[SIN:.+]] = kiln.sin
// CHECK: %[[C4:.+]] = kiln.reshape %[[COS]] : tensor<?x?x16xf32> -> tensor<?x1x?x16xf32>
// CHECK: %[[S4:.+]] = kiln.reshape %[[SIN]] : tensor<?x?x16xf32> -> tensor<?x1x?x16xf32>
// CHECK: %[[X:.+]] = kiln.transpose %[[Q]] [0, 2, 1, 3]
// CHECK: %[[HEADS:.+]] = kiln.transpose %[[X]] [0, 2, 1, 3] : tensor<?x4x?x16xf32> -> tensor<?x?x4x16xf32>
// CHECK: %[[CR:.+]] = kiln.reshape %[[C4]] : tensor<?x1x?x16xf32> -> tensor<?x?x16xf32>
// CHECK: %[[CH:.+]] = kiln.slice %[[CR]] {axes = array<i64: 2>, ends = array<i64: 8>, starts = array<i64: 0>, steps = array<i64: 1>} : tensor<?x?x16xf32> -> tensor<?x?x8xf32>
// CHECK: %[[SR:.+]] = kiln.reshape %[[S4]]
// CHECK: %[[SH:.+]] = kiln.slice %[[SR]]
// CHECK: %[[R:.+]] = kiln.rope %[[HEADS]], %[[CH]], %[[SH]] : tensor<?x?x4x16xf32>, tensor<?x?x8xf32>, tensor<?x?x8xf32> -> tensor<?x?x4x16xf32>
// CHECK: %[[Y:.+]] = kiln.transpose %[[R]] [0, 2, 1, 3]
// CHECK: return %[[Y]]
// CANON-LABEL: func.func @rotate_half
// CANON: %[[R:.+]] = kiln.rope %arg0,
// CANON-NEXT: %[[Y:.+]] = kiln.transpose %[[R]] [0, 2, 1, 3]
// CANON-NEXT: return %[[Y]]
func.func @rotate_half(%q: tensor<?x?x4x16xf32>, %pos: tensor<?x?xi64>, %f: tensor<8xf32>) -> tensor<?x4x?x16xf32> {
  %p0 = kiln.reshape %pos : tensor<?x?xi64> -> tensor<?x?x1xi64>
  %p1 = kiln.cast %p0 : tensor<?x?x1xi64> to tensor<?x?x1xf32>
  %fr = kiln.mul %p1, %f : (tensor<?x?x1xf32>, tensor<8xf32>) -> tensor<?x?x8xf32>
  %emb = kiln.concat %fr, %fr {axis = -1 : i64} : (tensor<?x?x8xf32>, tensor<?x?x8xf32>) -> tensor<?x?x16xf32>
  %cos = kiln.cos %emb : tensor<?x?x16xf32>
  %sin = kiln.sin %emb : tensor<?x?x16xf32>
  %c4 = kiln.reshape %cos : tensor<?x?x16xf32> -> tensor<?x1x?x16xf32>
  %s4 = kiln.reshape %sin : tensor<?x?x16xf32> -> tensor<?x1x?x16xf32>
  %x = kiln.transpose %q [0, 2, 1, 3] : tensor<?x?x4x16xf32> -> tensor<?x4x?x16xf32>
  %a = kiln.mul %x, %c4 : (tensor<?x4x?x16xf32>, tensor<?x1x?x16xf32>) -> tensor<?x4x?x16xf32>
  %x1 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 8>, starts = array<i64: 0>, steps = array<i64: 1>} : tensor<?x4x?x16xf32> -> tensor<?x4x?x8xf32>
  %x2 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 9223372036854775807>, starts = array<i64: 8>, steps = array<i64: 1>} : tensor<?x4x?x16xf32> -> tensor<?x4x?x8xf32>
  %n = kiln.neg %x2 : tensor<?x4x?x8xf32>
  %rot = kiln.concat %n, %x1 {axis = -1 : i64} : (tensor<?x4x?x8xf32>, tensor<?x4x?x8xf32>) -> tensor<?x4x?x16xf32>
  %b = kiln.mul %rot, %s4 : (tensor<?x4x?x16xf32>, tensor<?x1x?x16xf32>) -> tensor<?x4x?x16xf32>
  %y = kiln.add %a, %b : (tensor<?x4x?x16xf32>, tensor<?x4x?x16xf32>) -> tensor<?x4x?x16xf32>
  return %y : tensor<?x4x?x16xf32>
}

// -----

// Older exports gather rows of a constant cos/sin table by position; the
// table's halves are equal. Operands in the other order, tables of batch 1.
// CHECK-LABEL: func.func @gathered_table
// CHECK: kiln.rope %{{.+}}, %{{.+}}, %{{.+}} : tensor<2x3x2x4xf32>, tensor<1x3x2xf32>, tensor<1x3x2xf32> -> tensor<2x3x2x4xf32>
func.func @gathered_table(%x: tensor<2x2x3x4xf32>, %pos: tensor<1x3xi64>) -> tensor<2x2x3x4xf32> {
  %ct = arith.constant dense<[[1.0, 0.5, 1.0, 0.5], [0.25, 0.75, 0.25, 0.75], [0.1, 0.2, 0.1, 0.2], [0.3, 0.4, 0.3, 0.4]]> : tensor<4x4xf32>
  %st = arith.constant dense<[[0.0, 0.5, 0.0, 0.5], [0.6, 0.7, 0.6, 0.7], [0.8, 0.9, 0.8, 0.9], [0.2, 0.1, 0.2, 0.1]]> : tensor<4x4xf32>
  %c = kiln.gather %ct[%pos] {axis = 0 : i64} : tensor<4x4xf32>, tensor<1x3xi64> -> tensor<1x3x4xf32>
  %s = kiln.gather %st[%pos] {axis = 0 : i64} : tensor<4x4xf32>, tensor<1x3xi64> -> tensor<1x3x4xf32>
  %c4 = kiln.reshape %c : tensor<1x3x4xf32> -> tensor<1x1x3x4xf32>
  %s4 = kiln.reshape %s : tensor<1x3x4xf32> -> tensor<1x1x3x4xf32>
  %a = kiln.mul %c4, %x : (tensor<1x1x3x4xf32>, tensor<2x2x3x4xf32>) -> tensor<2x2x3x4xf32>
  %x1 = kiln.slice %x {axes = array<i64: -1>, ends = array<i64: 2>, starts = array<i64: 0>, steps = array<i64: 1>} : tensor<2x2x3x4xf32> -> tensor<2x2x3x2xf32>
  %x2 = kiln.slice %x {axes = array<i64: -1>, ends = array<i64: 4>, starts = array<i64: 2>, steps = array<i64: 1>} : tensor<2x2x3x4xf32> -> tensor<2x2x3x2xf32>
  %n = kiln.neg %x2 : tensor<2x2x3x2xf32>
  %rot = kiln.concat %n, %x1 {axis = 3 : i64} : (tensor<2x2x3x2xf32>, tensor<2x2x3x2xf32>) -> tensor<2x2x3x4xf32>
  %b = kiln.mul %s4, %rot : (tensor<1x1x3x4xf32>, tensor<2x2x3x4xf32>) -> tensor<2x2x3x4xf32>
  %y = kiln.add %b, %a : (tensor<2x2x3x4xf32>, tensor<2x2x3x4xf32>) -> tensor<2x2x3x4xf32>
  return %y : tensor<2x2x3x4xf32>
}

// -----

// Near-miss: a constant table whose halves differ is not rope's.
// CHECK-LABEL: func.func @table_halves_differ
// CHECK-NOT: kiln.rope
func.func @table_halves_differ(%x: tensor<2x2x3x4xf32>, %pos: tensor<1x3xi64>) -> tensor<2x2x3x4xf32> {
  %ct = arith.constant dense<[[1.0, 0.5, 1.0, 0.6], [0.25, 0.75, 0.25, 0.75], [0.1, 0.2, 0.1, 0.2], [0.3, 0.4, 0.3, 0.4]]> : tensor<4x4xf32>
  %c = kiln.gather %ct[%pos] {axis = 0 : i64} : tensor<4x4xf32>, tensor<1x3xi64> -> tensor<1x3x4xf32>
  %c4 = kiln.reshape %c : tensor<1x3x4xf32> -> tensor<1x1x3x4xf32>
  %a = kiln.mul %x, %c4 : (tensor<2x2x3x4xf32>, tensor<1x1x3x4xf32>) -> tensor<2x2x3x4xf32>
  %x1 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 2>, starts = array<i64: 0>, steps = array<i64: 1>} : tensor<2x2x3x4xf32> -> tensor<2x2x3x2xf32>
  %x2 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 4>, starts = array<i64: 2>, steps = array<i64: 1>} : tensor<2x2x3x4xf32> -> tensor<2x2x3x2xf32>
  %n = kiln.neg %x2 : tensor<2x2x3x2xf32>
  %rot = kiln.concat %n, %x1 {axis = 3 : i64} : (tensor<2x2x3x2xf32>, tensor<2x2x3x2xf32>) -> tensor<2x2x3x4xf32>
  %b = kiln.mul %rot, %c4 : (tensor<2x2x3x4xf32>, tensor<1x1x3x4xf32>) -> tensor<2x2x3x4xf32>
  %y = kiln.add %a, %b : (tensor<2x2x3x4xf32>, tensor<2x2x3x4xf32>) -> tensor<2x2x3x4xf32>
  return %y : tensor<2x2x3x4xf32>
}

// -----

// Near-misses: the halves swapped the other way (concat(x1, -x2)), and
// tables that vary by head.
// CHECK-LABEL: func.func @near_misses
// CHECK-NOT: kiln.rope
func.func @near_misses(%x: tensor<2x2x3x4xf32>, %t: tensor<2x3x2xf32>, %th: tensor<1x2x3x4xf32>) -> (tensor<2x2x3x4xf32>, tensor<2x2x3x4xf32>) {
  %emb = kiln.concat %t, %t {axis = 2 : i64} : (tensor<2x3x2xf32>, tensor<2x3x2xf32>) -> tensor<2x3x4xf32>
  %cos = kiln.cos %emb : tensor<2x3x4xf32>
  %c4 = kiln.reshape %cos : tensor<2x3x4xf32> -> tensor<2x1x3x4xf32>
  %x1 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 2>, starts = array<i64: 0>, steps = array<i64: 1>} : tensor<2x2x3x4xf32> -> tensor<2x2x3x2xf32>
  %x2 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 4>, starts = array<i64: 2>, steps = array<i64: 1>} : tensor<2x2x3x4xf32> -> tensor<2x2x3x2xf32>
  %n = kiln.neg %x2 : tensor<2x2x3x2xf32>
  %a = kiln.mul %x, %c4 : (tensor<2x2x3x4xf32>, tensor<2x1x3x4xf32>) -> tensor<2x2x3x4xf32>
  %wrong = kiln.concat %x1, %n {axis = 3 : i64} : (tensor<2x2x3x2xf32>, tensor<2x2x3x2xf32>) -> tensor<2x2x3x4xf32>
  %b = kiln.mul %wrong, %c4 : (tensor<2x2x3x4xf32>, tensor<2x1x3x4xf32>) -> tensor<2x2x3x4xf32>
  %y = kiln.add %a, %b : (tensor<2x2x3x4xf32>, tensor<2x2x3x4xf32>) -> tensor<2x2x3x4xf32>
  %rot = kiln.concat %n, %x1 {axis = 3 : i64} : (tensor<2x2x3x2xf32>, tensor<2x2x3x2xf32>) -> tensor<2x2x3x4xf32>
  %a2 = kiln.mul %x, %th : (tensor<2x2x3x4xf32>, tensor<1x2x3x4xf32>) -> tensor<2x2x3x4xf32>
  %b2 = kiln.mul %rot, %th : (tensor<2x2x3x4xf32>, tensor<1x2x3x4xf32>) -> tensor<2x2x3x4xf32>
  %z = kiln.add %a2, %b2 : (tensor<2x2x3x4xf32>, tensor<2x2x3x4xf32>) -> tensor<2x2x3x4xf32>
  return %y, %z : tensor<2x2x3x4xf32>, tensor<2x2x3x4xf32>
}

// -----

// Near-miss: a pairwise rotation with tables repeated by halves, not pairs.
// CHECK-LABEL: func.func @pairs_with_half_tables
// CHECK-NOT: kiln.rope
// CHECK: return
func.func @pairs_with_half_tables(%x: tensor<1x3x2x4xf32>, %t: tensor<1x3x2xf32>) -> tensor<1x3x2x4xf32> {
  %e = kiln.concat %t, %t {axis = 2 : i64} : (tensor<1x3x2xf32>, tensor<1x3x2xf32>) -> tensor<1x3x4xf32>
  %c = kiln.cos %e : tensor<1x3x4xf32>
  %c4 = kiln.reshape %c : tensor<1x3x4xf32> -> tensor<1x3x1x4xf32>
  %x0 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 4>, starts = array<i64: 0>, steps = array<i64: 2>} : tensor<1x3x2x4xf32> -> tensor<1x3x2x2xf32>
  %x1 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 4>, starts = array<i64: 1>, steps = array<i64: 2>} : tensor<1x3x2x4xf32> -> tensor<1x3x2x2xf32>
  %n1 = kiln.neg %x1 : tensor<1x3x2x2xf32>
  %u1 = kiln.reshape %n1 : tensor<1x3x2x2xf32> -> tensor<1x3x2x2x1xf32>
  %u0 = kiln.reshape %x0 : tensor<1x3x2x2xf32> -> tensor<1x3x2x2x1xf32>
  %st = kiln.concat %u1, %u0 {axis = 4 : i64} : (tensor<1x3x2x2x1xf32>, tensor<1x3x2x2x1xf32>) -> tensor<1x3x2x2x2xf32>
  %rot = kiln.reshape %st : tensor<1x3x2x2x2xf32> -> tensor<1x3x2x4xf32>
  %a = kiln.mul %x, %c4 : (tensor<1x3x2x4xf32>, tensor<1x3x1x4xf32>) -> tensor<1x3x2x4xf32>
  %b = kiln.mul %rot, %c4 : (tensor<1x3x2x4xf32>, tensor<1x3x1x4xf32>) -> tensor<1x3x2x4xf32>
  %y = kiln.add %a, %b : (tensor<1x3x2x4xf32>, tensor<1x3x2x4xf32>) -> tensor<1x3x2x4xf32>
  return %y : tensor<1x3x2x4xf32>
}

// -----

// Near-miss: stack(x[..., ::2], -x[..., 1::2]) swaps the pair's roles.
// CHECK-LABEL: func.func @pairs_swapped
// CHECK-NOT: kiln.rope
// CHECK: return
func.func @pairs_swapped(%x: tensor<1x3x2x4xf32>, %t: tensor<1x3x2xf32>) -> tensor<1x3x2x4xf32> {
  %c = kiln.cos %t : tensor<1x3x2xf32>
  %c1 = kiln.reshape %c : tensor<1x3x2xf32> -> tensor<1x3x2x1xf32>
  %c2 = kiln.broadcast %c1 : tensor<1x3x2x1xf32> -> tensor<1x3x2x2xf32>
  %c3 = kiln.reshape %c2 : tensor<1x3x2x2xf32> -> tensor<1x3x4xf32>
  %c4 = kiln.reshape %c3 : tensor<1x3x4xf32> -> tensor<1x3x1x4xf32>
  %x0 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 4>, starts = array<i64: 0>, steps = array<i64: 2>} : tensor<1x3x2x4xf32> -> tensor<1x3x2x2xf32>
  %x1 = kiln.slice %x {axes = array<i64: 3>, ends = array<i64: 4>, starts = array<i64: 1>, steps = array<i64: 2>} : tensor<1x3x2x4xf32> -> tensor<1x3x2x2xf32>
  %n1 = kiln.neg %x1 : tensor<1x3x2x2xf32>
  %u1 = kiln.reshape %n1 : tensor<1x3x2x2xf32> -> tensor<1x3x2x2x1xf32>
  %u0 = kiln.reshape %x0 : tensor<1x3x2x2xf32> -> tensor<1x3x2x2x1xf32>
  %st = kiln.concat %u0, %u1 {axis = 4 : i64} : (tensor<1x3x2x2x1xf32>, tensor<1x3x2x2x1xf32>) -> tensor<1x3x2x2x2xf32>
  %rot = kiln.reshape %st : tensor<1x3x2x2x2xf32> -> tensor<1x3x2x4xf32>
  %a = kiln.mul %x, %c4 : (tensor<1x3x2x4xf32>, tensor<1x3x1x4xf32>) -> tensor<1x3x2x4xf32>
  %b = kiln.mul %rot, %c4 : (tensor<1x3x2x4xf32>, tensor<1x3x1x4xf32>) -> tensor<1x3x2x4xf32>
  %y = kiln.add %a, %b : (tensor<1x3x2x4xf32>, tensor<1x3x2x4xf32>) -> tensor<1x3x2x4xf32>
  return %y : tensor<1x3x2x4xf32>
}
