// RUN: kiln-opt %s --kiln-fuse-projections --split-input-file | FileCheck %s

kiln.weight_decl @wq : tensor<64x64xf32> at #kiln.external<"m.bin", offset = 0, length = 16384>
kiln.weight_decl @wk : tensor<64x32xf32> at #kiln.external<"m.bin", offset = 16384, length = 8192>
kiln.weight_decl @wv : tensor<64x32xf32> at #kiln.external<"m.bin", offset = 24576, length = 8192>
// q, k and v of one input: one matmul by [Wq | Wk | Wv], sliced back.
// CHECK-LABEL: func.func @qkv
// CHECK-DAG: %[[Q:.+]] = kiln.weight @wq
// CHECK-DAG: %[[K:.+]] = kiln.weight @wk
// CHECK-DAG: %[[V:.+]] = kiln.weight @wv
// CHECK: %[[W:.+]] = kiln.concat %[[Q]], %[[K]], %[[V]] {axis = 1 : i64} : (tensor<64x64xf32>, tensor<64x32xf32>, tensor<64x32xf32>) -> tensor<64x128xf32>
// CHECK: %[[Y:.+]] = kiln.matmul %arg0, %[[W]] : tensor<?x?x64xf32>, tensor<64x128xf32> -> tensor<?x?x128xf32>
// CHECK: kiln.slice %[[Y]] {axes = array<i64: 2>, ends = array<i64: 64>, starts = array<i64: 0>, steps = array<i64: 1>} : tensor<?x?x128xf32> -> tensor<?x?x64xf32>
// CHECK: kiln.slice %[[Y]] {axes = array<i64: 2>, ends = array<i64: 96>, starts = array<i64: 64>, steps = array<i64: 1>} : tensor<?x?x128xf32> -> tensor<?x?x32xf32>
// CHECK: kiln.slice %[[Y]] {axes = array<i64: 2>, ends = array<i64: 128>, starts = array<i64: 96>, steps = array<i64: 1>} : tensor<?x?x128xf32> -> tensor<?x?x32xf32>
// CHECK-NOT: kiln.matmul
func.func @qkv(%x: tensor<?x?x64xf32>) -> (tensor<?x?x64xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32>) {
  %wq = kiln.weight @wq : tensor<64x64xf32>
  %wk = kiln.weight @wk : tensor<64x32xf32>
  %wv = kiln.weight @wv : tensor<64x32xf32>
  %q = kiln.matmul %x, %wq : tensor<?x?x64xf32>, tensor<64x64xf32> -> tensor<?x?x64xf32>
  %k = kiln.matmul %x, %wk : tensor<?x?x64xf32>, tensor<64x32xf32> -> tensor<?x?x32xf32>
  %v = kiln.matmul %x, %wv : tensor<?x?x64xf32>, tensor<64x32xf32> -> tensor<?x?x32xf32>
  return %q, %k, %v : tensor<?x?x64xf32>, tensor<?x?x32xf32>, tensor<?x?x32xf32>
}

// -----

kiln.weight_decl @wq : tensor<16x8xf32> at #kiln.external<"m.bin", offset = 0, length = 512>
kiln.weight_decl @wk : tensor<16x8xf32> at #kiln.external<"m.bin", offset = 512, length = 512>
kiln.weight_decl @bq : tensor<16xf32> at #kiln.external<"m.bin", offset = 1024, length = 64>
kiln.weight_decl @bk : tensor<16xf32> at #kiln.external<"m.bin", offset = 1088, length = 64>
// Output-major weights with biases: rows and biases concatenate.
// CHECK-LABEL: func.func @transposed_biased
// CHECK: %[[W:.+]] = kiln.concat %{{.+}}, %{{.+}} {axis = 0 : i64} : (tensor<16x8xf32>, tensor<16x8xf32>) -> tensor<32x8xf32>
// CHECK: %[[B:.+]] = kiln.concat %{{.+}}, %{{.+}} {axis = 0 : i64} : (tensor<16xf32>, tensor<16xf32>) -> tensor<32xf32>
// CHECK: kiln.matmul %arg0, %[[W]] bias(%[[B]]) {transpose_b} : tensor<4x8xf32>, tensor<32x8xf32>, tensor<32xf32> -> tensor<4x32xf32>
func.func @transposed_biased(%x: tensor<4x8xf32>) -> (tensor<4x16xf32>, tensor<4x16xf32>) {
  %wq = kiln.weight @wq : tensor<16x8xf32>
  %wk = kiln.weight @wk : tensor<16x8xf32>
  %bq = kiln.weight @bq : tensor<16xf32>
  %bk = kiln.weight @bk : tensor<16xf32>
  %q = kiln.matmul %x, %wq bias(%bq) {transpose_b} : tensor<4x8xf32>, tensor<16x8xf32>, tensor<16xf32> -> tensor<4x16xf32>
  %k = kiln.matmul %x, %wk bias(%bk) {transpose_b} : tensor<4x8xf32>, tensor<16x8xf32>, tensor<16xf32> -> tensor<4x16xf32>
  return %q, %k : tensor<4x16xf32>, tensor<4x16xf32>
}

// -----

kiln.weight_decl @wg : tensor<16x32xf32> at #kiln.external<"m.bin", offset = 0, length = 2048>
kiln.weight_decl @wu : tensor<16x32xf32> at #kiln.external<"m.bin", offset = 2048, length = 2048>
kiln.weight_decl @wd : tensor<32x16xf32> at #kiln.external<"m.bin", offset = 4096, length = 2048>
// A gated MLP's gate and up weights become one gate_up weight.
// CHECK-LABEL: func.func @gate_up
// CHECK: %[[GU:.+]] = kiln.concat %{{.+}}, %{{.+}} {axis = 1 : i64} : (tensor<16x32xf32>, tensor<16x32xf32>) -> tensor<16x64xf32>
// CHECK: kiln.gated_mlp silu %arg0, gate_up(%[[GU]]) down(%{{.+}})
func.func @gate_up(%x: tensor<4x16xf32>) -> tensor<4x16xf32> {
  %wg = kiln.weight @wg : tensor<16x32xf32>
  %wu = kiln.weight @wu : tensor<16x32xf32>
  %wd = kiln.weight @wd : tensor<32x16xf32>
  %y = kiln.gated_mlp silu %x, gate(%wg) up(%wu) down(%wd) : (tensor<4x16xf32>, tensor<16x32xf32>, tensor<16x32xf32>, tensor<32x16xf32>) -> tensor<4x16xf32>
  return %y : tensor<4x16xf32>
}

// -----

kiln.weight_decl @wq : tensor<16x8xf32> at #kiln.external<"m.bin", offset = 0, length = 512>
kiln.weight_decl @wk : tensor<8x16xf32> at #kiln.external<"m.bin", offset = 512, length = 512>
kiln.weight_decl @bq : tensor<16xf32> at #kiln.external<"m.bin", offset = 1024, length = 64>
// Near-misses: orientations differ, one biased and one not, different
// inputs, a weight computed in the graph, and a lone projection.
// CHECK-LABEL: func.func @near_misses
// CHECK-NOT: kiln.concat
// CHECK: return
func.func @near_misses(%x: tensor<4x8xf32>, %y: tensor<4x8xf32>, %w: tensor<8x16xf32>) -> (tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>) {
  %wq = kiln.weight @wq : tensor<16x8xf32>
  %wk = kiln.weight @wk : tensor<8x16xf32>
  %bq = kiln.weight @bq : tensor<16xf32>
  %a = kiln.matmul %x, %wq {transpose_b} : tensor<4x8xf32>, tensor<16x8xf32> -> tensor<4x16xf32>
  %b = kiln.matmul %x, %wk : tensor<4x8xf32>, tensor<8x16xf32> -> tensor<4x16xf32>
  %c = kiln.matmul %y, %wk bias(%bq) : tensor<4x8xf32>, tensor<8x16xf32>, tensor<16xf32> -> tensor<4x16xf32>
  %wc = kiln.neg %wk : tensor<8x16xf32>
  %d = kiln.matmul %y, %wc : tensor<4x8xf32>, tensor<8x16xf32> -> tensor<4x16xf32>
  %e = kiln.matmul %y, %w : tensor<4x8xf32>, tensor<8x16xf32> -> tensor<4x16xf32>
  return %a, %b, %c, %d, %e : tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<4x16xf32>
}
