// RUN: kiln-opt %s --kiln-fuse-attention --split-input-file | FileCheck %s
// RUN: kiln-opt %s --kiln-fuse-attention --canonicalize --split-input-file | FileCheck %s --check-prefix=CANON

// TorchScript's sdpa decomposition with GQA: k and v repeated from 2 to 4
// heads, the scale split as sqrt(scale) on q and on k^T, a boolean mask made
// additive, and the isnan guard.
// CHECK-LABEL: func.func @sdpa_gqa
// CHECK-SAME: (%[[Q:[a-z0-9]+]]: tensor<?x4x?x16xf32>, %[[K:[a-z0-9]+]]: tensor<?x2x?x16xf32>, %[[V:[a-z0-9]+]]: tensor<?x2x?x16xf32>, %[[M:[a-z0-9]+]]: tensor<?x1x?x?xi1>)
// CHECK: %[[QB:.+]] = kiln.transpose %[[Q]] [0, 2, 1, 3] : tensor<?x4x?x16xf32> -> tensor<?x?x4x16xf32>
// CHECK: %[[KB:.+]] = kiln.transpose %[[K]] [0, 2, 1, 3] : tensor<?x2x?x16xf32> -> tensor<?x?x2x16xf32>
// CHECK: %[[VB:.+]] = kiln.transpose %[[V]] [0, 2, 1, 3]
// CHECK: %[[O:.+]] = kiln.attention %[[QB]] kv(%[[KB]], %[[VB]]) attn_mask(%[[M]]) {mask = #kiln.mask<none>, scale = 2.500000e-01 : f32} : (tensor<?x?x4x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x1x?x?xi1>) -> tensor<?x?x4x16xf32>
// CHECK: %[[R:.+]] = kiln.transpose %[[O]] [0, 2, 1, 3] : tensor<?x?x4x16xf32> -> tensor<?x4x?x16xf32>
// CHECK: return %[[R]]
// CANON-LABEL: func.func @sdpa_gqa
// CANON-NOT: kiln.softmax
// CANON-NOT: kiln.broadcast
// CANON: return
func.func @sdpa_gqa(%q: tensor<?x4x?x16xf32>, %k: tensor<?x2x?x16xf32>, %v: tensor<?x2x?x16xf32>, %m: tensor<?x1x?x?xi1>) -> tensor<?x4x?x16xf32> {
  %half = arith.constant dense<5.000000e-01> : tensor<f32>
  %zero = arith.constant dense<0.000000e+00> : tensor<1xf32>
  %ninf = arith.constant dense<0xFF800000> : tensor<1xf32>
  %k1 = kiln.reshape %k : tensor<?x2x?x16xf32> -> tensor<?x2x1x?x16xf32>
  %k2 = kiln.broadcast %k1 : tensor<?x2x1x?x16xf32> -> tensor<?x2x2x?x16xf32>
  %k3 = kiln.reshape %k2 : tensor<?x2x2x?x16xf32> -> tensor<?x4x?x16xf32>
  %v1 = kiln.reshape %v : tensor<?x2x?x16xf32> -> tensor<?x2x1x?x16xf32>
  %v2 = kiln.broadcast %v1 : tensor<?x2x1x?x16xf32> -> tensor<?x2x2x?x16xf32>
  %v3 = kiln.reshape %v2 : tensor<?x2x2x?x16xf32> -> tensor<?x4x?x16xf32>
  %kt = kiln.transpose %k3 [0, 1, 3, 2] : tensor<?x4x?x16xf32> -> tensor<?x4x16x?xf32>
  %qs = kiln.mul %q, %half : (tensor<?x4x?x16xf32>, tensor<f32>) -> tensor<?x4x?x16xf32>
  %ks = kiln.mul %kt, %half : (tensor<?x4x16x?xf32>, tensor<f32>) -> tensor<?x4x16x?xf32>
  %s = kiln.matmul %qs, %ks : tensor<?x4x?x16xf32>, tensor<?x4x16x?xf32> -> tensor<?x4x?x?xf32>
  %bias = kiln.select %m, %zero, %ninf : (tensor<?x1x?x?xi1>, tensor<1xf32>, tensor<1xf32>) -> tensor<?x1x?x?xf32>
  %sm = kiln.add %s, %bias : (tensor<?x4x?x?xf32>, tensor<?x1x?x?xf32>) -> tensor<?x4x?x?xf32>
  %p = kiln.softmax %sm : tensor<?x4x?x?xf32>
  %nan = kiln.compare ne, %p, %p : (tensor<?x4x?x?xf32>, tensor<?x4x?x?xf32>) -> tensor<?x4x?x?xi1>
  %pg = kiln.select %nan, %zero, %p : (tensor<?x4x?x?xi1>, tensor<1xf32>, tensor<?x4x?x?xf32>) -> tensor<?x4x?x?xf32>
  %o = kiln.matmul %pg, %v3 : tensor<?x4x?x?xf32>, tensor<?x4x?x16xf32> -> tensor<?x4x?x16xf32>
  return %o : tensor<?x4x?x16xf32>
}

// -----

// Gemma 2: scale on the scores, then tanh(s / 50) * 50, then a float mask.
// CHECK-LABEL: func.func @softcap
// CHECK: kiln.attention %{{.+}} kv(%{{.+}}, %{{.+}}) attn_mask(%{{.+}}) {mask = #kiln.mask<none>, scale = 2.500000e-01 : f32, softcap = 5.000000e+01 : f32} : (tensor<1x3x2x8xf32>, tensor<1x5x2x8xf32>, tensor<1x5x2x8xf32>, tensor<1x1x3x5xf32>)
func.func @softcap(%q: tensor<1x2x3x8xf32>, %k: tensor<1x2x5x8xf32>, %v: tensor<1x2x5x8xf32>, %bias: tensor<1x1x3x5xf32>) -> tensor<1x2x3x8xf32> {
  %scale = arith.constant dense<2.500000e-01> : tensor<f32>
  %cap = arith.constant dense<5.000000e+01> : tensor<f32>
  %kt = kiln.transpose %k [0, 1, 3, 2] : tensor<1x2x5x8xf32> -> tensor<1x2x8x5xf32>
  %s = kiln.matmul %q, %kt : tensor<1x2x3x8xf32>, tensor<1x2x8x5xf32> -> tensor<1x2x3x5xf32>
  %s1 = kiln.mul %s, %scale : (tensor<1x2x3x5xf32>, tensor<f32>) -> tensor<1x2x3x5xf32>
  %s2 = kiln.div %s1, %cap : (tensor<1x2x3x5xf32>, tensor<f32>) -> tensor<1x2x3x5xf32>
  %t = kiln.tanh %s2 : tensor<1x2x3x5xf32>
  %s3 = kiln.mul %t, %cap : (tensor<1x2x3x5xf32>, tensor<f32>) -> tensor<1x2x3x5xf32>
  %s4 = kiln.add %s3, %bias : (tensor<1x2x3x5xf32>, tensor<1x1x3x5xf32>) -> tensor<1x2x3x5xf32>
  %p = kiln.softmax %s4 : tensor<1x2x3x5xf32>
  %o = kiln.matmul %p, %v : tensor<1x2x3x5xf32>, tensor<1x2x5x8xf32> -> tensor<1x2x3x8xf32>
  return %o : tensor<1x2x3x8xf32>
}

// -----

// No mask, no scale factor (scale 1), k^T as the matmul's transpose_b.
// CHECK-LABEL: func.func @plain
// CHECK: kiln.attention %{{.+}} kv(%{{.+}}, %{{.+}}) {mask = #kiln.mask<none>, scale = 1.000000e+00 : f32}
func.func @plain(%q: tensor<2x2x3x8xf32>, %k: tensor<2x2x3x8xf32>, %v: tensor<2x2x3x8xf32>) -> tensor<2x2x3x8xf32> {
  %s = kiln.matmul %q, %k {transpose_b} : tensor<2x2x3x8xf32>, tensor<2x2x3x8xf32> -> tensor<2x2x3x3xf32>
  %p = kiln.softmax %s : tensor<2x2x3x3xf32>
  %o = kiln.matmul %p, %v : tensor<2x2x3x3xf32>, tensor<2x2x3x8xf32> -> tensor<2x2x3x8xf32>
  return %o : tensor<2x2x3x8xf32>
}

// -----

// dynamo's k^T: flatten to [-1, T, D], transpose, unflatten to [B, H, D, T],
// with T, B and H read off the repeated keys' shape.
// CHECK-LABEL: func.func @flattened_transpose
// CHECK-SAME: (%[[Q:[a-z0-9]+]]: tensor<?x4x?x16xf32>, %[[K:[a-z0-9]+]]: tensor<?x2x?x16xf32>
// CHECK: %[[KB:.+]] = kiln.transpose %[[K]] [0, 2, 1, 3]
// CHECK: kiln.attention %{{.+}} kv(%[[KB]], %{{.+}}) {mask = #kiln.mask<none>, scale = 2.500000e-01 : f32}
func.func @flattened_transpose(%q: tensor<?x4x?x16xf32>, %k: tensor<?x2x?x16xf32>, %v0: tensor<?x2x?x16xf32>) -> tensor<?x4x?x16xf32> {
  %v1 = kiln.reshape %v0 : tensor<?x2x?x16xf32> -> tensor<?x2x1x?x16xf32>
  %v2 = kiln.broadcast %v1 : tensor<?x2x1x?x16xf32> -> tensor<?x2x2x?x16xf32>
  %v = kiln.reshape %v2 : tensor<?x2x2x?x16xf32> -> tensor<?x4x?x16xf32>
  %m1 = arith.constant dense<-1> : tensor<1xi64>
  %d = arith.constant dense<16> : tensor<1xi64>
  %scale = arith.constant dense<5.000000e-01> : tensor<f32>
  %k1 = kiln.reshape %k : tensor<?x2x?x16xf32> -> tensor<?x2x1x?x16xf32>
  %k2 = kiln.broadcast %k1 : tensor<?x2x1x?x16xf32> -> tensor<?x2x2x?x16xf32>
  %k3 = kiln.reshape %k2 : tensor<?x2x2x?x16xf32> -> tensor<?x4x?x16xf32>
  %shape = kiln.shape_of %k3 : tensor<?x4x?x16xf32> -> tensor<4xi64>
  %t = kiln.slice %shape {axes = array<i64: 0>, ends = array<i64: -1>, starts = array<i64: -2>, steps = array<i64: 1>} : tensor<4xi64> -> tensor<1xi64>
  %bh = kiln.slice %shape {axes = array<i64: 0>, ends = array<i64: -2>, starts = array<i64: -9223372036854775808>, steps = array<i64: 1>} : tensor<4xi64> -> tensor<2xi64>
  %s1 = kiln.concat %m1, %t, %d {axis = 0 : i64} : (tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3xi64>
  %flat = kiln.reshape %k2 shape(%s1 : tensor<3xi64>) : tensor<?x2x2x?x16xf32> -> tensor<?x?x16xf32>
  %ft = kiln.transpose %flat [0, 2, 1] : tensor<?x?x16xf32> -> tensor<?x16x?xf32>
  %s2 = kiln.concat %bh, %d, %t {axis = 0 : i64} : (tensor<2xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<4xi64>
  %kt = kiln.reshape %ft shape(%s2 : tensor<4xi64>) : tensor<?x16x?xf32> -> tensor<?x4x16x?xf32>
  %qs = kiln.mul %q, %scale : (tensor<?x4x?x16xf32>, tensor<f32>) -> tensor<?x4x?x16xf32>
  %ks = kiln.mul %kt, %scale : (tensor<?x4x16x?xf32>, tensor<f32>) -> tensor<?x4x16x?xf32>
  %s = kiln.matmul %qs, %ks : tensor<?x4x?x16xf32>, tensor<?x4x16x?xf32> -> tensor<?x4x?x?xf32>
  %p = kiln.softmax %s : tensor<?x4x?x?xf32>
  %o = kiln.matmul %p, %v : tensor<?x4x?x?xf32>, tensor<?x4x?x16xf32> -> tensor<?x4x?x16xf32>
  return %o : tensor<?x4x?x16xf32>
}

// -----

// Near-miss: the flatten reads T off another tensor than the keys'.
// CHECK-LABEL: func.func @flattened_other_shape
// CHECK-NOT: kiln.attention
func.func @flattened_other_shape(%q: tensor<?x4x?x16xf32>, %k: tensor<?x4x?x16xf32>, %other: tensor<?x4x?x16xf32>, %v: tensor<?x4x?x16xf32>) -> tensor<?x4x?x16xf32> {
  %m1 = arith.constant dense<-1> : tensor<1xi64>
  %d = arith.constant dense<16> : tensor<1xi64>
  %shape = kiln.shape_of %other : tensor<?x4x?x16xf32> -> tensor<4xi64>
  %t = kiln.slice %shape {axes = array<i64: 0>, ends = array<i64: -1>, starts = array<i64: -2>, steps = array<i64: 1>} : tensor<4xi64> -> tensor<1xi64>
  %bh = kiln.slice %shape {axes = array<i64: 0>, ends = array<i64: -2>, starts = array<i64: 0>, steps = array<i64: 1>} : tensor<4xi64> -> tensor<2xi64>
  %s1 = kiln.concat %m1, %t, %d {axis = 0 : i64} : (tensor<1xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<3xi64>
  %flat = kiln.reshape %k shape(%s1 : tensor<3xi64>) : tensor<?x4x?x16xf32> -> tensor<?x?x16xf32>
  %ft = kiln.transpose %flat [0, 2, 1] : tensor<?x?x16xf32> -> tensor<?x16x?xf32>
  %s2 = kiln.concat %bh, %d, %t {axis = 0 : i64} : (tensor<2xi64>, tensor<1xi64>, tensor<1xi64>) -> tensor<4xi64>
  %kt = kiln.reshape %ft shape(%s2 : tensor<4xi64>) : tensor<?x16x?xf32> -> tensor<?x4x16x?xf32>
  %s = kiln.matmul %q, %kt : tensor<?x4x?x16xf32>, tensor<?x4x16x?xf32> -> tensor<?x4x?x?xf32>
  %p = kiln.softmax %s : tensor<?x4x?x?xf32>
  %o = kiln.matmul %p, %v : tensor<?x4x?x?xf32>, tensor<?x4x?x16xf32> -> tensor<?x4x?x16xf32>
  return %o : tensor<?x4x?x16xf32>
}

// -----

// Near-misses: keys repeated to 4 heads with values of 4 heads is not
// grouped-query attention kiln can read.
// CHECK-LABEL: func.func @heads_differ
// CHECK-NOT: kiln.attention
func.func @heads_differ(%q: tensor<1x4x3x8xf32>, %k: tensor<1x2x3x8xf32>, %v: tensor<1x4x3x8xf32>) -> tensor<1x4x3x8xf32> {
  %k1 = kiln.reshape %k : tensor<1x2x3x8xf32> -> tensor<1x2x1x3x8xf32>
  %k2 = kiln.broadcast %k1 : tensor<1x2x1x3x8xf32> -> tensor<1x2x2x3x8xf32>
  %k3 = kiln.reshape %k2 : tensor<1x2x2x3x8xf32> -> tensor<1x4x3x8xf32>
  %s = kiln.matmul %q, %k3 {transpose_b} : tensor<1x4x3x8xf32>, tensor<1x4x3x8xf32> -> tensor<1x4x3x3xf32>
  %p = kiln.softmax %s : tensor<1x4x3x3xf32>
  %o = kiln.matmul %p, %v : tensor<1x4x3x3xf32>, tensor<1x4x3x8xf32> -> tensor<1x4x3x8xf32>
  return %o : tensor<1x4x3x8xf32>
}

// -----

// Near-misses: a scale after the softcap, a softmax over the queries, a mask
// multiplied instead of added, and k^T that swaps other dimensions.
// CHECK-LABEL: func.func @near_misses
// CHECK-NOT: kiln.attention
// CHECK: return
func.func @near_misses(%q: tensor<1x2x3x8xf32>, %k: tensor<1x2x3x8xf32>, %v: tensor<1x2x3x8xf32>, %m: tensor<1x1x3x3xf32>) -> (tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<2x1x3x8xf32>) {
  %scale = arith.constant dense<2.500000e-01> : tensor<f32>
  %cap = arith.constant dense<5.000000e+01> : tensor<f32>
  %kt = kiln.transpose %k [0, 1, 3, 2] : tensor<1x2x3x8xf32> -> tensor<1x2x8x3xf32>
  %s = kiln.matmul %q, %kt : tensor<1x2x3x8xf32>, tensor<1x2x8x3xf32> -> tensor<1x2x3x3xf32>
  %a1 = kiln.div %s, %cap : (tensor<1x2x3x3xf32>, tensor<f32>) -> tensor<1x2x3x3xf32>
  %a2 = kiln.tanh %a1 : tensor<1x2x3x3xf32>
  %a3 = kiln.mul %a2, %cap : (tensor<1x2x3x3xf32>, tensor<f32>) -> tensor<1x2x3x3xf32>
  %a4 = kiln.mul %a3, %scale : (tensor<1x2x3x3xf32>, tensor<f32>) -> tensor<1x2x3x3xf32>
  %ap = kiln.softmax %a4 : tensor<1x2x3x3xf32>
  %a = kiln.matmul %ap, %v : tensor<1x2x3x3xf32>, tensor<1x2x3x8xf32> -> tensor<1x2x3x8xf32>
  %bp = kiln.softmax %s {axis = 2 : i64} : tensor<1x2x3x3xf32>
  %b = kiln.matmul %bp, %v : tensor<1x2x3x3xf32>, tensor<1x2x3x8xf32> -> tensor<1x2x3x8xf32>
  %c1 = kiln.mul %s, %m : (tensor<1x2x3x3xf32>, tensor<1x1x3x3xf32>) -> tensor<1x2x3x3xf32>
  %cp = kiln.softmax %c1 : tensor<1x2x3x3xf32>
  %c = kiln.matmul %cp, %v : tensor<1x2x3x3xf32>, tensor<1x2x3x8xf32> -> tensor<1x2x3x8xf32>
  %qx = kiln.transpose %q [1, 0, 2, 3] : tensor<1x2x3x8xf32> -> tensor<2x1x3x8xf32>
  %kx = kiln.transpose %k [1, 0, 3, 2] : tensor<1x2x3x8xf32> -> tensor<2x1x8x3xf32>
  %vx = kiln.transpose %v [1, 0, 2, 3] : tensor<1x2x3x8xf32> -> tensor<2x1x3x8xf32>
  %d0 = kiln.matmul %qx, %kx : tensor<2x1x3x8xf32>, tensor<2x1x8x3xf32> -> tensor<2x1x3x3xf32>
  %dp = kiln.softmax %d0 : tensor<2x1x3x3xf32>
  %d = kiln.matmul %dp, %vx : tensor<2x1x3x3xf32>, tensor<2x1x3x8xf32> -> tensor<2x1x3x8xf32>
  return %a, %b, %c, %d : tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<1x2x3x8xf32>, tensor<2x1x3x8xf32>
}

// -----

// The exporters' causal mask: keys arange(past + S) against queries
// arange(S) + past, and-ed with a padding mask. The causal conjunct becomes
// the mask kind, the padding mask stays explicit.
// CHECK-LABEL: func.func @causal_mask
// CHECK-SAME: (%[[Q:[a-z0-9]+]]: tensor<?x?x4x16xf32>, %[[K:[a-z0-9]+]]: tensor<?x?x2x16xf32>, %[[V:[a-z0-9]+]]: tensor<?x?x2x16xf32>, %[[PAST:[a-z0-9]+]]: tensor<i64>, %[[S:[a-z0-9]+]]: tensor<i64>, %[[PAD:[a-z0-9]+]]: tensor<?x1x1x?xi1>)
// CHECK: kiln.attention %[[Q]] kv(%[[K]], %[[V]]) attn_mask(%[[PAD]]) {mask = #kiln.mask<causal>, scale = 2.500000e-01 : f32}
func.func @causal_mask(%q: tensor<?x?x4x16xf32>, %k: tensor<?x?x2x16xf32>, %v: tensor<?x?x2x16xf32>, %past: tensor<i64>, %s: tensor<i64>, %pad: tensor<?x1x1x?xi1>) -> tensor<?x?x4x16xf32> {
  %zero = arith.constant dense<0> : tensor<i64>
  %one = arith.constant dense<1> : tensor<i64>
  %true = arith.constant dense<true> : tensor<i1>
  %total = kiln.add %past, %s : (tensor<i64>, tensor<i64>) -> tensor<i64>
  %qi = kiln.range %zero, %s, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  %qpos = kiln.add %qi, %past : (tensor<?xi64>, tensor<i64>) -> tensor<?xi64>
  %kpos = kiln.range %zero, %total, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  %q4 = kiln.reshape %qpos : tensor<?xi64> -> tensor<1x1x?x1xi64>
  %k4 = kiln.reshape %kpos : tensor<?xi64> -> tensor<1x1x1x?xi64>
  %c = kiln.compare le, %k4, %q4 : (tensor<1x1x1x?xi64>, tensor<1x1x?x1xi64>) -> tensor<1x1x?x?xi1>
  %c1 = kiln.and %c, %true : (tensor<1x1x?x?xi1>, tensor<i1>) -> tensor<1x1x?x?xi1>
  %m = kiln.and %c1, %pad : (tensor<1x1x?x?xi1>, tensor<?x1x1x?xi1>) -> tensor<?x1x?x?xi1>
  %o = kiln.attention %q kv(%k, %v) attn_mask(%m) {mask = #kiln.mask<none>, scale = 2.500000e-01 : f32} : (tensor<?x?x4x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<?x1x?x?xi1>) -> tensor<?x?x4x16xf32>
  return %o : tensor<?x?x4x16xf32>
}

// -----

// Near-misses, each left as an explicit mask: a strict comparison (the
// diagonal hidden), queries not shifted by the past (causal from the top
// left, which is not kiln's end-aligned kind), and keys counted to another
// length than past + S.
// CHECK-LABEL: func.func @not_causal
// CHECK-NOT: #kiln.mask<causal>
// CHECK: return
func.func @not_causal(%q: tensor<?x?x4x16xf32>, %k: tensor<?x?x2x16xf32>, %v: tensor<?x?x2x16xf32>, %past: tensor<i64>, %s: tensor<i64>, %other: tensor<i64>) -> (tensor<?x?x4x16xf32>, tensor<?x?x4x16xf32>, tensor<?x?x4x16xf32>) {
  %zero = arith.constant dense<0> : tensor<i64>
  %one = arith.constant dense<1> : tensor<i64>
  %total = kiln.add %past, %s : (tensor<i64>, tensor<i64>) -> tensor<i64>
  %qi = kiln.range %zero, %s, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  %qpos = kiln.add %qi, %past : (tensor<?xi64>, tensor<i64>) -> tensor<?xi64>
  %kpos = kiln.range %zero, %total, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  %q4 = kiln.reshape %qpos : tensor<?xi64> -> tensor<1x1x?x1xi64>
  %k4 = kiln.reshape %kpos : tensor<?xi64> -> tensor<1x1x1x?xi64>
  %strict = kiln.compare lt, %k4, %q4 : (tensor<1x1x1x?xi64>, tensor<1x1x?x1xi64>) -> tensor<1x1x?x?xi1>
  %a = kiln.attention %q kv(%k, %v) attn_mask(%strict) {mask = #kiln.mask<none>} : (tensor<?x?x4x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<1x1x?x?xi1>) -> tensor<?x?x4x16xf32>
  %qtl = kiln.reshape %qi : tensor<?xi64> -> tensor<1x1x?x1xi64>
  %topleft = kiln.compare le, %k4, %qtl : (tensor<1x1x1x?xi64>, tensor<1x1x?x1xi64>) -> tensor<1x1x?x?xi1>
  %b = kiln.attention %q kv(%k, %v) attn_mask(%topleft) {mask = #kiln.mask<none>} : (tensor<?x?x4x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<1x1x?x?xi1>) -> tensor<?x?x4x16xf32>
  %total2 = kiln.add %other, %s : (tensor<i64>, tensor<i64>) -> tensor<i64>
  %kpos2 = kiln.range %zero, %total2, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  %k42 = kiln.reshape %kpos2 : tensor<?xi64> -> tensor<1x1x1x?xi64>
  %otherlen = kiln.compare le, %k42, %q4 : (tensor<1x1x1x?xi64>, tensor<1x1x?x1xi64>) -> tensor<1x1x?x?xi1>
  %c = kiln.attention %q kv(%k, %v) attn_mask(%otherlen) {mask = #kiln.mask<none>} : (tensor<?x?x4x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<1x1x?x?xi1>) -> tensor<?x?x4x16xf32>
  return %a, %b, %c : tensor<?x?x4x16xf32>, tensor<?x?x4x16xf32>, tensor<?x?x4x16xf32>
}

// -----

// Gemma 2's sliding layer: causal and j > q - 16 over the same indices is
// the sliding_window kind; against other query positions it is not.
// CHECK-LABEL: func.func @sliding_window
// CHECK: kiln.attention %{{.+}} kv(%{{.+}}, %{{.+}}) {mask = #kiln.mask<sliding_window, window = 16>}
// CHECK: kiln.attention %{{.+}} kv(%{{.+}}, %{{.+}}) attn_mask(%{{.+}}) {mask = #kiln.mask<causal>}
func.func @sliding_window(%q: tensor<?x?x4x16xf32>, %k: tensor<?x?x2x16xf32>, %v: tensor<?x?x2x16xf32>, %past: tensor<i64>, %s: tensor<i64>, %qother: tensor<1x1x?x1xi64>) -> (tensor<?x?x4x16xf32>, tensor<?x?x4x16xf32>) {
  %zero = arith.constant dense<0> : tensor<i64>
  %one = arith.constant dense<1> : tensor<i64>
  %w = arith.constant dense<16> : tensor<i64>
  %total = kiln.add %past, %s : (tensor<i64>, tensor<i64>) -> tensor<i64>
  %qi = kiln.range %zero, %s, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  %qpos = kiln.add %qi, %past : (tensor<?xi64>, tensor<i64>) -> tensor<?xi64>
  %kpos = kiln.range %zero, %total, %one : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  %q4 = kiln.reshape %qpos : tensor<?xi64> -> tensor<1x1x?x1xi64>
  %k4 = kiln.reshape %kpos : tensor<?xi64> -> tensor<1x1x1x?xi64>
  %c = kiln.compare le, %k4, %q4 : (tensor<1x1x1x?xi64>, tensor<1x1x?x1xi64>) -> tensor<1x1x?x?xi1>
  %lo = kiln.sub %q4, %w : (tensor<1x1x?x1xi64>, tensor<i64>) -> tensor<1x1x?x1xi64>
  %in = kiln.compare gt, %k4, %lo : (tensor<1x1x1x?xi64>, tensor<1x1x?x1xi64>) -> tensor<1x1x?x?xi1>
  %m = kiln.and %c, %in : (tensor<1x1x?x?xi1>, tensor<1x1x?x?xi1>) -> tensor<1x1x?x?xi1>
  %a = kiln.attention %q kv(%k, %v) attn_mask(%m) {mask = #kiln.mask<none>} : (tensor<?x?x4x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<1x1x?x?xi1>) -> tensor<?x?x4x16xf32>
  %lo2 = kiln.sub %qother, %w : (tensor<1x1x?x1xi64>, tensor<i64>) -> tensor<1x1x?x1xi64>
  %in2 = kiln.compare gt, %k4, %lo2 : (tensor<1x1x1x?xi64>, tensor<1x1x?x1xi64>) -> tensor<1x1x?x?xi1>
  %m2 = kiln.and %c, %in2 : (tensor<1x1x?x?xi1>, tensor<1x1x?x?xi1>) -> tensor<1x1x?x?xi1>
  %b = kiln.attention %q kv(%k, %v) attn_mask(%m2) {mask = #kiln.mask<none>} : (tensor<?x?x4x16xf32>, tensor<?x?x2x16xf32>, tensor<?x?x2x16xf32>, tensor<1x1x?x?xi1>) -> tensor<?x?x4x16xf32>
  return %a, %b : tensor<?x?x4x16xf32>, tensor<?x?x4x16xf32>
}
