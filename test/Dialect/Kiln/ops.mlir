// RUN: kiln-opt %s | kiln-opt | FileCheck %s
// RUN: kiln-opt %s --mlir-print-op-generic | kiln-opt | FileCheck %s
// RUN: kiln-opt %s --emit-bytecode | kiln-opt | FileCheck %s

// Round trip of every kiln op, attribute and type in its custom form.

// Repeated schemes and cache types print once, as aliases.
// CHECK-DAG: #[[W4:.+]] = #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16>
// CHECK-DAG: #[[W4ZP:.+]] = #kiln.quant<storage = ui4, expressed = f16, block = [1, 32], scale = f16, zero_point = ui4>
// CHECK-DAG: #[[FP8:.+]] = #kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [1, 0], scale = f32>
// CHECK-DAG: #[[FP8T:.+]] = #kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [0, 0], scale = f32>
// CHECK-DAG: #[[FP8H:.+]] = #kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [0, 0, 1, 0], scale = f32>
// CHECK-DAG: ![[KV:.+]] = !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>
// CHECK-DAG: ![[KVF8:.+]] = !kiln.kv_cache<paged<16>, f8E4M3FN, kv_heads = 2, head_dim = 64, quant = #[[FP8H]]>

// CHECK: kiln.weight_decl @model.embed_tokens.weight : tensor<64x32xbf16> at #kiln.external<"model.onnx.data", offset = 4096, length = 4096>
kiln.weight_decl @"model.embed_tokens.weight" : tensor<64x32xbf16> at #kiln.external<"model.onnx.data", offset = 4096, length = 4096>
// CHECK: kiln.weight_decl @lm_head : tensor<64x32xbf16>{{$}}
kiln.weight_decl @lm_head : tensor<64x32xbf16>
// CHECK: kiln.weight_decl @q4 : tensor<256x256xi4> at #kiln.external<"w.bin", offset = 0, length = 32768>
kiln.weight_decl @q4 : tensor<256x256xi4> at #kiln.external<"w.bin", offset = 0, length = 32768>

// CHECK-LABEL: func.func @weights
func.func @weights() -> (tensor<64x32xbf16>, tensor<256x256xi4>) {
  // CHECK: %[[E:.+]] = kiln.weight @model.embed_tokens.weight : tensor<64x32xbf16>
  %0 = kiln.weight @"model.embed_tokens.weight" : tensor<64x32xbf16>
  // CHECK: %[[Q:.+]] = kiln.weight @q4 : tensor<256x256xi4>
  %1 = kiln.weight @q4 : tensor<256x256xi4>
  return %0, %1 : tensor<64x32xbf16>, tensor<256x256xi4>
}

// CHECK-LABEL: func.func @quantization
func.func @quantization(%data: tensor<256x256xi4>, %scales: tensor<256x2xf16>,
                        %udata: tensor<64x96xui4>, %uscales: tensor<64x3xf16>,
                        %zp: tensor<64x3xui4>, %x: tensor<?x256xbf16>)
    -> (tensor<256x256xbf16>, tensor<64x96xf16>) {
  // CHECK: kiln.make_qtensor %{{.+}}, %{{.+}} : tensor<256x256xi4>, tensor<256x2xf16> -> !kiln.qtensor<256x256, #[[W4]]>
  %q = kiln.make_qtensor %data, %scales : tensor<256x256xi4>, tensor<256x2xf16> -> !kiln.qtensor<256x256, #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16>>
  // CHECK: kiln.make_qtensor %{{.+}}, %{{.+}}, %{{.+}} : tensor<64x96xui4>, tensor<64x3xf16>, tensor<64x3xui4> -> !kiln.qtensor<64x96, #[[W4ZP]]>
  %u = kiln.make_qtensor %udata, %uscales, %zp : tensor<64x96xui4>, tensor<64x3xf16>, tensor<64x3xui4> -> !kiln.qtensor<64x96, #kiln.quant<storage = ui4, expressed = f16, block = [1, 32], scale = f16, zero_point = ui4>>
  // CHECK: kiln.dequantize %{{.+}} : !kiln.qtensor<256x256, #[[W4]]> -> tensor<256x256xbf16>
  %d = kiln.dequantize %q : !kiln.qtensor<256x256, #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16>> -> tensor<256x256xbf16>
  // CHECK: kiln.dequantize %{{.+}} : !kiln.qtensor<64x96, #[[W4ZP]]> -> tensor<64x96xf16>
  %du = kiln.dequantize %u : !kiln.qtensor<64x96, #kiln.quant<storage = ui4, expressed = f16, block = [1, 32], scale = f16, zero_point = ui4>> -> tensor<64x96xf16>
  // CHECK: kiln.qtensor_data %{{.+}} : !kiln.qtensor<256x256, #[[W4]]> -> tensor<256x256xi4>
  %raw = kiln.qtensor_data %q : !kiln.qtensor<256x256, #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16>> -> tensor<256x256xi4>
  return %d, %du : tensor<256x256xbf16>, tensor<64x96xf16>
}

// CHECK-LABEL: func.func @quantize
func.func @quantize(%x: tensor<?x256xbf16>, %s: tensor<1x1xf32>, %xf: tensor<4x64xf16>, %s2: tensor<4x2xf16>, %z2: tensor<4x2xui4>) {
  // CHECK: kiln.quantize %{{.+}} : tensor<?x256xbf16> -> !kiln.qtensor<?x256, #[[FP8]]>
  %0 = kiln.quantize %x : tensor<?x256xbf16> -> !kiln.qtensor<?x256, #kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [1, 0], scale = f32>>
  // CHECK: kiln.quantize %{{.+}} scales(%{{.+}} : tensor<1x1xf32>) : tensor<?x256xbf16> -> !kiln.qtensor<?x256, #[[FP8T]]>
  %1 = kiln.quantize %x scales(%s : tensor<1x1xf32>) : tensor<?x256xbf16> -> !kiln.qtensor<?x256, #kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [0, 0], scale = f32>>
  // CHECK: kiln.quantize %{{.+}} scales(%{{.+}} : tensor<4x2xf16>) zero_points(%{{.+}} : tensor<4x2xui4>) : tensor<4x64xf16>
  %2 = kiln.quantize %xf scales(%s2 : tensor<4x2xf16>) zero_points(%z2 : tensor<4x2xui4>) : tensor<4x64xf16> -> !kiln.qtensor<4x64, #kiln.quant<storage = ui4, expressed = f16, block = [1, 32], scale = f16, zero_point = ui4>>
  return
}

// CHECK-LABEL: func.func @hadamard
func.func @hadamard(%x: tensor<?x?x96xbf16>) -> tensor<?x?x96xbf16> {
  // CHECK: kiln.hadamard %{{.+}} {block = 32 : i64} : tensor<?x?x96xbf16>
  %0 = kiln.hadamard %x {block = 32 : i64} : tensor<?x?x96xbf16>
  return %0 : tensor<?x?x96xbf16>
}

// CHECK-LABEL: func.func @rotate
func.func @rotate(%x: tensor<?x96xbf16>, %r: tensor<32x32xf32>) -> tensor<?x96xbf16> {
  // CHECK: kiln.rotate %{{.+}}, %{{.+}} : tensor<?x96xbf16>, tensor<32x32xf32> -> tensor<?x96xbf16>
  %0 = kiln.rotate %x, %r : tensor<?x96xbf16>, tensor<32x32xf32> -> tensor<?x96xbf16>
  return %0 : tensor<?x96xbf16>
}

// CHECK-LABEL: func.func @lookup
func.func @lookup(%table: tensor<64x32xbf16>, %ids: tensor<?x?xi64>, %x: tensor<50x32xf32>, %i: tensor<2x3xi32>,
                  %m: tensor<?x?xi1>, %mi: tensor<?x4x2xi64>, %x3: tensor<2x5x7xf32>, %i3: tensor<2x3x1xi32>)
    -> (tensor<?x?x32xbf16>, tensor<2x3x32xf32>) {
  // CHECK: kiln.embedding %{{.+}}, %{{.+}} : tensor<64x32xbf16>, tensor<?x?xi64> -> tensor<?x?x32xbf16>
  %0 = kiln.embedding %table, %ids : tensor<64x32xbf16>, tensor<?x?xi64> -> tensor<?x?x32xbf16>
  // CHECK: kiln.gather %{{.+}}[%{{.+}}] {axis = 0 : i64} : tensor<50x32xf32>, tensor<2x3xi32> -> tensor<2x3x32xf32>
  %1 = kiln.gather %x[%i] {axis = 0 : i64} : tensor<50x32xf32>, tensor<2x3xi32> -> tensor<2x3x32xf32>
  // CHECK: kiln.gather_nd %{{.+}}[%{{.+}}] : tensor<?x?xi1>, tensor<?x4x2xi64> -> tensor<?x4xi1>
  %2 = kiln.gather_nd %m[%mi] : tensor<?x?xi1>, tensor<?x4x2xi64> -> tensor<?x4xi1>
  // CHECK: kiln.gather_nd %{{.+}}[%{{.+}}] {batch_dims = 1 : i64} : tensor<2x5x7xf32>, tensor<2x3x1xi32> -> tensor<2x3x7xf32>
  %3 = kiln.gather_nd %x3[%i3] {batch_dims = 1 : i64} : tensor<2x5x7xf32>, tensor<2x3x1xi32> -> tensor<2x3x7xf32>
  return %0, %1 : tensor<?x?x32xbf16>, tensor<2x3x32xf32>
}

// CHECK-LABEL: func.func @matmuls
func.func @matmuls(%x: tensor<?x?x256xbf16>, %w: tensor<256x512xbf16>, %wt: tensor<512x256xbf16>, %b: tensor<512xbf16>,
                   %q: !kiln.qtensor<512x256, #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16>>,
                   %a3: tensor<4x8x16xf32>, %b3: tensor<1x16x2xf32>) {
  // CHECK: kiln.matmul %{{.+}}, %{{.+}} : tensor<?x?x256xbf16>, tensor<256x512xbf16> -> tensor<?x?x512xbf16>
  %0 = kiln.matmul %x, %w : tensor<?x?x256xbf16>, tensor<256x512xbf16> -> tensor<?x?x512xbf16>
  // CHECK: kiln.matmul %{{.+}}, %{{.+}} bias(%{{.+}}) {transpose_b} : tensor<?x?x256xbf16>, tensor<512x256xbf16>, tensor<512xbf16> -> tensor<?x?x512xbf16>
  %1 = kiln.matmul %x, %wt bias(%b) {transpose_b} : tensor<?x?x256xbf16>, tensor<512x256xbf16>, tensor<512xbf16> -> tensor<?x?x512xbf16>
  // CHECK: kiln.matmul %{{.+}}, %{{.+}} {transpose_b} : tensor<?x?x256xbf16>, !kiln.qtensor<512x256, #[[W4]]> -> tensor<?x?x512xbf16>
  %2 = kiln.matmul %x, %q {transpose_b} : tensor<?x?x256xbf16>, !kiln.qtensor<512x256, #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16>> -> tensor<?x?x512xbf16>
  // CHECK: kiln.matmul %{{.+}}, %{{.+}} : tensor<4x8x16xf32>, tensor<1x16x2xf32> -> tensor<4x8x2xf32>
  %3 = kiln.matmul %a3, %b3 : tensor<4x8x16xf32>, tensor<1x16x2xf32> -> tensor<4x8x2xf32>
  return
}

// CHECK-LABEL: func.func @elementwise
func.func @elementwise(%a: tensor<?x4xf32>, %b: tensor<4xf32>, %c: tensor<?x1xf32>, %i: tensor<?x1xi64>, %j: tensor<1x?xi64>,
                       %p: tensor<?x?xi1>, %s: tensor<f32>) {
  // CHECK: kiln.add %{{.+}}, %{{.+}} : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  %0 = kiln.add %a, %b : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  // CHECK: kiln.sub %{{.+}}, %{{.+}} : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
  %1 = kiln.sub %a, %c : (tensor<?x4xf32>, tensor<?x1xf32>) -> tensor<?x4xf32>
  // CHECK: kiln.mul %{{.+}}, %{{.+}} : (tensor<?x4xf32>, tensor<f32>) -> tensor<?x4xf32>
  %2 = kiln.mul %a, %s : (tensor<?x4xf32>, tensor<f32>) -> tensor<?x4xf32>
  // CHECK: kiln.div
  %3 = kiln.div %a, %b : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  // CHECK: kiln.pow
  %4 = kiln.pow %a, %s : (tensor<?x4xf32>, tensor<f32>) -> tensor<?x4xf32>
  // CHECK: kiln.max
  %5 = kiln.max %a, %b : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  // CHECK: kiln.min
  %6 = kiln.min %i, %j : (tensor<?x1xi64>, tensor<1x?xi64>) -> tensor<?x?xi64>
  // CHECK: kiln.compare le, %{{.+}}, %{{.+}} : (tensor<?x1xi64>, tensor<1x?xi64>) -> tensor<?x?xi1>
  %7 = kiln.compare le, %i, %j : (tensor<?x1xi64>, tensor<1x?xi64>) -> tensor<?x?xi1>
  // CHECK: kiln.and %{{.+}}, %{{.+}} : (tensor<?x?xi1>, tensor<?x?xi1>) -> tensor<?x?xi1>
  %8 = kiln.and %7, %p : (tensor<?x?xi1>, tensor<?x?xi1>) -> tensor<?x?xi1>
  // CHECK: kiln.or
  %9 = kiln.or %8, %p : (tensor<?x?xi1>, tensor<?x?xi1>) -> tensor<?x?xi1>
  // CHECK: kiln.not %{{.+}} : tensor<?x?xi1>
  %10 = kiln.not %9 : tensor<?x?xi1>
  // CHECK: kiln.select %{{.+}}, %{{.+}}, %{{.+}} : (tensor<?x?xi1>, tensor<f32>, tensor<f32>) -> tensor<?x?xf32>
  %11 = kiln.select %10, %s, %s : (tensor<?x?xi1>, tensor<f32>, tensor<f32>) -> tensor<?x?xf32>
  // CHECK: kiln.neg %{{.+}} : tensor<?x4xf32>
  %12 = kiln.neg %a : tensor<?x4xf32>
  // CHECK: kiln.abs
  %13 = kiln.abs %12 : tensor<?x4xf32>
  // CHECK: kiln.exp
  %14 = kiln.exp %13 : tensor<?x4xf32>
  // CHECK: kiln.log
  %15 = kiln.log %14 : tensor<?x4xf32>
  // CHECK: kiln.sqrt
  %16 = kiln.sqrt %14 : tensor<?x4xf32>
  // CHECK: kiln.rsqrt
  %17 = kiln.rsqrt %16 : tensor<?x4xf32>
  // CHECK: kiln.reciprocal
  %18 = kiln.reciprocal %17 : tensor<?x4xf32>
  // CHECK: kiln.tanh
  %19 = kiln.tanh %18 : tensor<?x4xf32>
  // CHECK: kiln.sin
  %20 = kiln.sin %19 : tensor<?x4xf32>
  // CHECK: kiln.cos
  %21 = kiln.cos %20 : tensor<?x4xf32>
  // CHECK: kiln.erf
  %22 = kiln.erf %21 : tensor<?x4xf32>
  // CHECK: kiln.activation silu %{{.+}} : tensor<?x4xf32>
  %23 = kiln.activation silu %22 : tensor<?x4xf32>
  // CHECK: kiln.activation gelu_tanh
  %24 = kiln.activation gelu_tanh %23 : tensor<?x4xf32>
  // CHECK: kiln.activation relu
  %25 = kiln.activation relu %24 : tensor<?x4xf32>
  // CHECK: kiln.activation gelu
  %26 = kiln.activation gelu %25 : tensor<?x4xf32>
  // CHECK: kiln.activation sigmoid
  %27 = kiln.activation sigmoid %26 : tensor<?x4xf32>
  // CHECK: kiln.trilu %{{.+}} {diagonal = 1 : i64, upper} : tensor<?x4xf32>
  %tri = kiln.trilu %a {diagonal = 1 : i64, upper} : tensor<?x4xf32>
  // CHECK: kiln.trilu %{{.+}} : tensor<?x?xi1>
  %tril = kiln.trilu %p : tensor<?x?xi1>
  // CHECK: kiln.cumsum %{{.+}} {axis = 1 : i64, exclusive, reverse} : tensor<?x4xf32>
  %cs = kiln.cumsum %a {axis = 1 : i64, exclusive, reverse} : tensor<?x4xf32>
  // CHECK: kiln.cast %{{.+}} : tensor<?x4xf32> to tensor<?x4xbf16>
  %28 = kiln.cast %27 : tensor<?x4xf32> to tensor<?x4xbf16>
  return
}

// CHECK-LABEL: func.func @norms
func.func @norms(%x: tensor<?x?x256xbf16>, %w: tensor<256xbf16>, %xf: tensor<?x768xf32>, %g: tensor<768xf32>, %b: tensor<768xf32>,
                 %s: tensor<?x8x?x?xf32>) {
  // CHECK: kiln.reduce mean %{{.+}} {axes = array<i64: -1>, keep_dims} : tensor<?x768xf32> -> tensor<?x1xf32>
  %0 = kiln.reduce mean %xf {axes = array<i64: -1>, keep_dims} : tensor<?x768xf32> -> tensor<?x1xf32>
  // CHECK: kiln.reduce sum %{{.+}} {axes = array<i64: 0, 1>} : tensor<?x768xf32> -> tensor<f32>
  %1 = kiln.reduce sum %xf {axes = array<i64: 0, 1>} : tensor<?x768xf32> -> tensor<f32>
  // CHECK: kiln.reduce max
  %2 = kiln.reduce max %xf {axes = array<i64: 1>} : tensor<?x768xf32> -> tensor<?xf32>
  // CHECK: kiln.reduce min
  %3 = kiln.reduce min %xf {axes = array<i64: 1>} : tensor<?x768xf32> -> tensor<?xf32>
  // CHECK: kiln.reduce prod
  %4 = kiln.reduce prod %xf {axes = array<i64: 1>} : tensor<?x768xf32> -> tensor<?xf32>
  // CHECK: kiln.softmax %{{.+}} : tensor<?x8x?x?xf32>
  %5 = kiln.softmax %s : tensor<?x8x?x?xf32>
  // CHECK: kiln.softmax %{{.+}} {axis = 1 : i64} : tensor<?x8x?x?xf32>
  %6 = kiln.softmax %s {axis = 1 : i64} : tensor<?x8x?x?xf32>
  // CHECK: kiln.rms_norm %{{.+}}, %{{.+}} {epsilon = 9.99999997E-7 : f32} : tensor<?x?x256xbf16>, tensor<256xbf16> -> tensor<?x?x256xbf16>
  %7 = kiln.rms_norm %x, %w {epsilon = 1.0e-06 : f32} : tensor<?x?x256xbf16>, tensor<256xbf16> -> tensor<?x?x256xbf16>
  // CHECK: %{{.+}}, %{{.+}} = kiln.add_rms_norm %{{.+}}, %{{.+}}, %{{.+}} {epsilon = 9.99999997E-7 : f32} : tensor<?x?x256xbf16>, tensor<256xbf16>
  %sum, %normed = kiln.add_rms_norm %x, %7, %w {epsilon = 1.0e-06 : f32} : tensor<?x?x256xbf16>, tensor<256xbf16>
  // CHECK: kiln.layer_norm %{{.+}}, %{{.+}}, %{{.+}} {epsilon = 9.99999974E-6 : f32} : tensor<?x768xf32>, tensor<768xf32>, tensor<768xf32> -> tensor<?x768xf32>
  %8 = kiln.layer_norm %xf, %g, %b {epsilon = 1.0e-05 : f32} : tensor<?x768xf32>, tensor<768xf32>, tensor<768xf32> -> tensor<?x768xf32>
  // CHECK: kiln.layer_norm %{{.+}}, %{{.+}} {axis = 0 : i64, epsilon = 9.99999974E-6 : f32} : tensor<?x768xf32>, tensor<?x768xf32> -> tensor<?x768xf32>
  %9 = kiln.layer_norm %xf, %xf {axis = 0 : i64, epsilon = 1.0e-05 : f32} : tensor<?x768xf32>, tensor<?x768xf32> -> tensor<?x768xf32>
  return
}

// CHECK-LABEL: func.func @rope
func.func @rope(%q: tensor<?x?x8x64xbf16>, %cos: tensor<4096x32xf32>, %sin: tensor<4096x32xf32>, %pos: tensor<?x?xi64>,
                %cg: tensor<?x?x16xf32>, %sg: tensor<?x?x16xf32>) {
  // CHECK: kiln.rope %{{.+}}, %{{.+}}, %{{.+}} positions(%{{.+}}) : tensor<?x?x8x64xbf16>, tensor<4096x32xf32>, tensor<4096x32xf32>, tensor<?x?xi64> -> tensor<?x?x8x64xbf16>
  %0 = kiln.rope %q, %cos, %sin positions(%pos) : tensor<?x?x8x64xbf16>, tensor<4096x32xf32>, tensor<4096x32xf32>, tensor<?x?xi64> -> tensor<?x?x8x64xbf16>
  // CHECK: kiln.rope %{{.+}}, %{{.+}}, %{{.+}} {interleaved, rotary_dim = 32 : i64} : tensor<?x?x8x64xbf16>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x8x64xbf16>
  %1 = kiln.rope %q, %cg, %sg {interleaved, rotary_dim = 32 : i64} : tensor<?x?x8x64xbf16>, tensor<?x?x16xf32>, tensor<?x?x16xf32> -> tensor<?x?x8x64xbf16>
  return
}

// Every mask kind, K/V source and sparsity format composes.
// CHECK-LABEL: func.func @attention
func.func @attention(%q: tensor<?x?x8x64xbf16>, %k: tensor<?x?x2x64xbf16>, %v: tensor<?x?x2x32xbf16>,
                     %c: !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>,
                     %p: !kiln.kv_cache<paged<16>, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = bf16, block = [1, 1, 1, 0], scale = f32>>,
                     %f8: !kiln.kv_cache<paged<8>, f8E4M3FN, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [0, 0, 1, 0], scale = f32>>,
                     %i4: !kiln.kv_cache<paged<32>, i4, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i4, expressed = bf16, block = [1, 1, 1, 32], scale = f16>>,
                     %m: tensor<?x1x?x?xbf16>, %bm: tensor<?x1x1x?xi1>, %t: tensor<?x?x?xi1>,
                     %bs: tensor<?x8x?x?xi32>, %vi: tensor<?x8x?xi32>, %si: tensor<?x8x?xi32>, %tk: tensor<?x2x?x?xi64>,
                     %qk: !kiln.qtensor<?x?x2x64, #kiln.quant<storage = i8, expressed = bf16, block = [1, 1, 1, 0], scale = f32>>) {
  // CHECK: kiln.attention %{{.+}} kv(%{{.+}}, %{{.+}}) {mask = #kiln.mask<none>} : (tensor<?x?x8x64xbf16>, tensor<?x?x2x64xbf16>, tensor<?x?x2x32xbf16>) -> tensor<?x?x8x32xbf16>
  %0 = kiln.attention %q kv(%k, %v) {mask = #kiln.mask<none>} : (tensor<?x?x8x64xbf16>, tensor<?x?x2x64xbf16>, tensor<?x?x2x32xbf16>) -> tensor<?x?x8x32xbf16>
  // CHECK: kiln.attention %{{.+}} cache(%{{.+}}) {mask = #kiln.mask<causal>, scale = 1.250000e-01 : f32, softcap = 5.000000e+01 : f32}
  %1 = kiln.attention %q cache(%c) {mask = #kiln.mask<causal>, scale = 0.125 : f32, softcap = 50.0 : f32} : (tensor<?x?x8x64xbf16>, !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>) -> tensor<?x?x8x64xbf16>
  // CHECK: kiln.attention %{{.+}} cache(%{{.+}}) attn_mask(%{{.+}}) {mask = #kiln.mask<sliding_window, window = 4096, sink = 4>}
  %2 = kiln.attention %q cache(%p) attn_mask(%m) {mask = #kiln.mask<sliding_window, window = 4096, sink = 4>} : (tensor<?x?x8x64xbf16>, !kiln.kv_cache<paged<16>, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = bf16, block = [1, 1, 1, 0], scale = f32>>, tensor<?x1x?x?xbf16>) -> tensor<?x?x8x64xbf16>
  // CHECK: kiln.attention %{{.+}} cache(%{{.+}}) tree_mask(%{{.+}}) {mask = #kiln.mask<tree>}
  %3 = kiln.attention %q cache(%f8) tree_mask(%t) {mask = #kiln.mask<tree>} : (tensor<?x?x8x64xbf16>, !kiln.kv_cache<paged<8>, f8E4M3FN, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [0, 0, 1, 0], scale = f32>>, tensor<?x?x?xi1>) -> tensor<?x?x8x64xbf16>
  // CHECK: kiln.attention %{{.+}} cache(%{{.+}}) sparse_index(%{{.+}}) {mask = #kiln.mask<sparse>, sparsity = #kiln.sparsity<block_sparse, q_block = 64, kv_block = 64>}
  %4 = kiln.attention %q cache(%i4) sparse_index(%bs) {mask = #kiln.mask<sparse>, sparsity = #kiln.sparsity<block_sparse, q_block = 64, kv_block = 64>} : (tensor<?x?x8x64xbf16>, !kiln.kv_cache<paged<32>, i4, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i4, expressed = bf16, block = [1, 1, 1, 32], scale = f16>>, tensor<?x8x?x?xi32>) -> tensor<?x?x8x64xbf16>
  // CHECK: kiln.attention %{{.+}} cache(%{{.+}}) attn_mask(%{{.+}}) sparse_index(%{{.+}}, %{{.+}}) {mask = #kiln.mask<causal>, sparsity = #kiln.sparsity<vertical_slash, q_block = 64>}
  %5 = kiln.attention %q cache(%p) attn_mask(%bm) sparse_index(%vi, %si) {mask = #kiln.mask<causal>, sparsity = #kiln.sparsity<vertical_slash, q_block = 64>} : (tensor<?x?x8x64xbf16>, !kiln.kv_cache<paged<16>, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = bf16, block = [1, 1, 1, 0], scale = f32>>, tensor<?x1x1x?xi1>, tensor<?x8x?xi32>, tensor<?x8x?xi32>) -> tensor<?x?x8x64xbf16>
  // CHECK: kiln.attention %{{.+}} cache(%{{.+}}) sparse_index(%{{.+}}) {mask = #kiln.mask<causal>, sparsity = #kiln.sparsity<token_topk>}
  %6 = kiln.attention %q cache(%c) sparse_index(%tk) {mask = #kiln.mask<causal>, sparsity = #kiln.sparsity<token_topk>} : (tensor<?x?x8x64xbf16>, !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>, tensor<?x2x?x?xi64>) -> tensor<?x?x8x64xbf16>
  // CHECK: kiln.attention %{{.+}} kv(%{{.+}}, %{{.+}}) {mask = #kiln.mask<causal>} : (tensor<?x?x8x64xbf16>, !kiln.qtensor<?x?x2x64, #{{.+}}>, !kiln.qtensor<?x?x2x64, #{{.+}}>) -> tensor<?x?x8x64xbf16>
  %7 = kiln.attention %q kv(%qk, %qk) {mask = #kiln.mask<causal>} : (tensor<?x?x8x64xbf16>, !kiln.qtensor<?x?x2x64, #kiln.quant<storage = i8, expressed = bf16, block = [1, 1, 1, 0], scale = f32>>, !kiln.qtensor<?x?x2x64, #kiln.quant<storage = i8, expressed = bf16, block = [1, 1, 1, 0], scale = f32>>) -> tensor<?x?x8x64xbf16>
  return
}

// CHECK-LABEL: func.func @mlp
func.func @mlp(%x: tensor<?x256xbf16>, %g: tensor<256x688xbf16>, %u: tensor<256x688xbf16>, %d: tensor<688x256xbf16>,
               %gu: tensor<1376x256xbf16>, %dt: tensor<256x688xbf16>,
               %dq: !kiln.qtensor<256x688, #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16>>,
               %h: tensor<?x1376xbf16>, %hg: tensor<?x688xbf16>) {
  // CHECK: kiln.gated_mlp silu %{{.+}}, gate(%{{.+}}) up(%{{.+}}) down(%{{.+}}) : (tensor<?x256xbf16>, tensor<256x688xbf16>, tensor<256x688xbf16>, tensor<688x256xbf16>) -> tensor<?x256xbf16>
  %0 = kiln.gated_mlp silu %x, gate(%g) up(%u) down(%d) : (tensor<?x256xbf16>, tensor<256x688xbf16>, tensor<256x688xbf16>, tensor<688x256xbf16>) -> tensor<?x256xbf16>
  // CHECK: kiln.gated_mlp gelu_tanh %{{.+}}, gate_up(%{{.+}}) down(%{{.+}}) {transpose_weights} : (tensor<?x256xbf16>, tensor<1376x256xbf16>, !kiln.qtensor<256x688, #[[W4]]>) -> tensor<?x256xbf16>
  %1 = kiln.gated_mlp gelu_tanh %x, gate_up(%gu) down(%dq) {transpose_weights} : (tensor<?x256xbf16>, tensor<1376x256xbf16>, !kiln.qtensor<256x688, #kiln.quant<storage = i4, expressed = bf16, block = [1, 128], scale = f16>>) -> tensor<?x256xbf16>
  // CHECK: kiln.glu silu %{{.+}} : tensor<?x1376xbf16> -> tensor<?x688xbf16>
  %2 = kiln.glu silu %h : tensor<?x1376xbf16> -> tensor<?x688xbf16>
  // CHECK: kiln.glu gelu %{{.+}}, %{{.+}} : tensor<?x688xbf16>, tensor<?x688xbf16> -> tensor<?x688xbf16>
  %3 = kiln.glu gelu %hg, %hg : tensor<?x688xbf16>, tensor<?x688xbf16> -> tensor<?x688xbf16>
  return
}

// CHECK-LABEL: func.func @kv_cache
func.func @kv_cache(%c: !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>, %k: tensor<?x?x2x64xbf16>,
                    %s: !kiln.kv_cache<paged<16>, f8E4M3FN, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [0, 0, 1, 0], scale = f32>>,
                    %ks: tensor<1x1x2x1xf32>, %static: tensor<?x2x128x64xbf16>, %upd: tensor<?x2x?x64xbf16>,
                    %wi: tensor<?xi64>)
    -> (!kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>, tensor<?x?x2x64xbf16>) {
  // CHECK: %[[C1:.+]] = kiln.kv_cache_append %{{.+}}, %{{.+}}, %{{.+}} : ![[KV]], tensor<?x?x2x64xbf16>, tensor<?x?x2x64xbf16>
  %c1 = kiln.kv_cache_append %c, %k, %k : !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>, tensor<?x?x2x64xbf16>, tensor<?x?x2x64xbf16>
  // CHECK: kiln.kv_cache_append %{{.+}}, %{{.+}}, %{{.+}} scales(%{{.+}}, %{{.+}} : tensor<1x1x2x1xf32>, tensor<1x1x2x1xf32>) : ![[KVF8]], tensor<?x?x2x64xbf16>, tensor<?x?x2x64xbf16>
  %s1 = kiln.kv_cache_append %s, %k, %k scales(%ks, %ks : tensor<1x1x2x1xf32>, tensor<1x1x2x1xf32>) : !kiln.kv_cache<paged<16>, f8E4M3FN, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = f8E4M3FN, expressed = bf16, block = [0, 0, 1, 0], scale = f32>>, tensor<?x?x2x64xbf16>, tensor<?x?x2x64xbf16>
  // CHECK: kiln.kv_cache_read %[[C1]] : ![[KV]] -> tensor<?x?x2x64xbf16>, tensor<?x?x2x64xbf16>
  %rk, %rv = kiln.kv_cache_read %c1 : !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64> -> tensor<?x?x2x64xbf16>, tensor<?x?x2x64xbf16>
  // CHECK: kiln.tensor_scatter %{{.+}}, %{{.+}}, %{{.+}} {axis = 2 : i64} : tensor<?x2x128x64xbf16>, tensor<?x2x?x64xbf16>, tensor<?xi64>
  %ts = kiln.tensor_scatter %static, %upd, %wi {axis = 2 : i64} : tensor<?x2x128x64xbf16>, tensor<?x2x?x64xbf16>, tensor<?xi64>
  // CHECK: kiln.tensor_scatter %{{.+}}, %{{.+}} {axis = -2 : i64, circular} : tensor<?x2x128x64xbf16>, tensor<?x2x?x64xbf16>
  %tc = kiln.tensor_scatter %static, %upd {axis = -2 : i64, circular} : tensor<?x2x128x64xbf16>, tensor<?x2x?x64xbf16>
  return %c1, %rk : !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64>, tensor<?x?x2x64xbf16>
}

// CHECK-LABEL: func.func @shapes
func.func @shapes(%x: tensor<?x?x256xbf16>, %s: tensor<4xi64>, %y: tensor<?x8x32xbf16>, %a: tensor<?x64xf32>,
                  %st: tensor<i64>, %b: tensor<1x1x?x?xf32>, %bs: tensor<4xi64>, %ds: tensor<2xi64>,
                  %packed: tensor<4x2x8xui8>) {
  // CHECK: kiln.reshape %{{.+}} shape(%{{.+}} : tensor<4xi64>) : tensor<?x?x256xbf16> -> tensor<?x?x8x32xbf16>
  %0 = kiln.reshape %x shape(%s : tensor<4xi64>) : tensor<?x?x256xbf16> -> tensor<?x?x8x32xbf16>
  // CHECK: kiln.reshape %{{.+}} : tensor<?x8x32xbf16> -> tensor<?x256xbf16>
  %1 = kiln.reshape %y : tensor<?x8x32xbf16> -> tensor<?x256xbf16>
  // CHECK: kiln.transpose %{{.+}} [0, 2, 1, 3] : tensor<?x?x8x32xbf16> -> tensor<?x8x?x32xbf16>
  %2 = kiln.transpose %0 [0, 2, 1, 3] : tensor<?x?x8x32xbf16> -> tensor<?x8x?x32xbf16>
  // CHECK: kiln.concat %{{.+}}, %{{.+}} {axis = -1 : i64} : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x128xf32>
  %3 = kiln.concat %a, %a {axis = -1 : i64} : (tensor<?x64xf32>, tensor<?x64xf32>) -> tensor<?x128xf32>
  // CHECK: kiln.slice %{{.+}} {axes = array<i64: 1>, ends = array<i64: 9223372036854775807>, starts = array<i64: 32>, steps = array<i64: 1>} : tensor<?x64xf32> -> tensor<?x32xf32>
  %4 = kiln.slice %a {axes = array<i64: 1>, starts = array<i64: 32>, ends = array<i64: 9223372036854775807>, steps = array<i64: 1>} : tensor<?x64xf32> -> tensor<?x32xf32>
  // CHECK: kiln.slice %{{.+}} {axes = array<i64: -1>, ends = array<i64: -65>, starts = array<i64: -1>, steps = array<i64: -2>} : tensor<?x64xf32> -> tensor<?x32xf32>
  %5 = kiln.slice %a {axes = array<i64: -1>, starts = array<i64: -1>, ends = array<i64: -65>, steps = array<i64: -2>} : tensor<?x64xf32> -> tensor<?x32xf32>
  // CHECK: kiln.broadcast %{{.+}} shape(%{{.+}} : tensor<4xi64>) : tensor<1x1x?x?xf32> -> tensor<?x8x?x?xf32>
  %6 = kiln.broadcast %b shape(%bs : tensor<4xi64>) : tensor<1x1x?x?xf32> -> tensor<?x8x?x?xf32>
  // CHECK: kiln.bitcast %{{.+}} : tensor<4x2x8xui8> -> tensor<4x32xui4>
  %bc = kiln.bitcast %packed : tensor<4x2x8xui8> -> tensor<4x32xui4>
  // CHECK: kiln.shape_of %{{.+}} : tensor<?x?x256xbf16> -> tensor<3xi64>
  %7 = kiln.shape_of %x : tensor<?x?x256xbf16> -> tensor<3xi64>
  // CHECK: kiln.range %{{.+}}, %{{.+}}, %{{.+}} : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  %8 = kiln.range %st, %st, %st : (tensor<i64>, tensor<i64>, tensor<i64>) -> tensor<?xi64>
  // CHECK: kiln.fill 0xFF800000 : f32 shape(%{{.+}} : tensor<2xi64>) : tensor<?x?xf32>
  %9 = kiln.fill 0xFF800000 : f32 shape(%ds : tensor<2xi64>) : tensor<?x?xf32>
  // CHECK: kiln.fill 1 : i64 : tensor<2x3xi64>
  %10 = kiln.fill 1 : i64 : tensor<2x3xi64>
  return
}

// CHECK-LABEL: func.func @fused_elementwise
// CHECK: kiln.elementwise %{{.+}}, %{{.+}} : (tensor<?x16xbf16>, tensor<16xf32>) -> tensor<?x16xbf16> {
// CHECK: ^bb0(%[[A:.+]]: bf16, %[[B:.+]]: f32):
// CHECK: %[[W:.+]] = arith.extf %[[A]] : bf16 to f32
// CHECK: %[[M:.+]] = arith.mulf %[[W]], %[[B]] : f32
// CHECK: %[[T:.+]] = math.tanh %[[M]] : f32
// CHECK: %[[N:.+]] = arith.truncf %[[T]] : f32 to bf16
// CHECK: kiln.yield %[[N]] : bf16
func.func @fused_elementwise(%x: tensor<?x16xbf16>, %s: tensor<16xf32>) -> tensor<?x16xbf16> {
  %0 = kiln.elementwise %x, %s : (tensor<?x16xbf16>, tensor<16xf32>) -> tensor<?x16xbf16> {
  ^bb0(%a: bf16, %b: f32):
    %w = arith.extf %a : bf16 to f32
    %m = arith.mulf %w, %b : f32
    %t = math.tanh %m : f32
    %n = arith.truncf %t : f32 to bf16
    kiln.yield %n : bf16
  }
  return %0 : tensor<?x16xbf16>
}
