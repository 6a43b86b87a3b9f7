// A one-layer Llama-style decoder (hidden 64, 4 query heads, 2 KV heads,
// head dim 16, MLP width 172, vocab 128) in the kiln dialect, written as an
// importer would emit it before the graph stage: explicit shape computations,
// duplicate weight reads and a weight nothing reads.
//
// The README's run command prints it after `kiln-opt --kiln-graph-pipeline`.

kiln.weight_decl @model.embed_tokens.weight : tensor<128x64xbf16> at #kiln.external<"model.onnx.data", offset = 0, length = 16384>
kiln.weight_decl @model.layers.0.input_layernorm.weight : tensor<64xbf16> at #kiln.external<"model.onnx.data", offset = 16384, length = 128>
kiln.weight_decl @model.layers.0.self_attn.qkv_proj.weight : tensor<128x64xbf16> at #kiln.external<"model.onnx.data", offset = 16512, length = 16384>
kiln.weight_decl @model.layers.0.self_attn.o_proj.weight : tensor<64x64xbf16> at #kiln.external<"model.onnx.data", offset = 32896, length = 8192>
kiln.weight_decl @model.layers.0.post_attention_layernorm.weight : tensor<64xbf16> at #kiln.external<"model.onnx.data", offset = 41088, length = 128>
kiln.weight_decl @model.layers.0.mlp.gate_up_proj.weight : tensor<344x64xbf16> at #kiln.external<"model.onnx.data", offset = 41216, length = 44032>
kiln.weight_decl @model.layers.0.mlp.down_proj.weight : tensor<64x172xbf16> at #kiln.external<"model.onnx.data", offset = 85248, length = 22016>
kiln.weight_decl @model.norm.weight : tensor<64xbf16> at #kiln.external<"model.onnx.data", offset = 107264, length = 128>
kiln.weight_decl @lm_head.weight : tensor<128x64xbf16> at #kiln.external<"model.onnx.data", offset = 107392, length = 16384>
kiln.weight_decl @rope.cos_cache : tensor<512x8xf32> at #kiln.external<"model.onnx.data", offset = 123776, length = 16384>
kiln.weight_decl @rope.sin_cache : tensor<512x8xf32> at #kiln.external<"model.onnx.data", offset = 140160, length = 16384>
// Exported but unused by this graph (e.g. a rotary table for another length).
kiln.weight_decl @rope.inv_freq : tensor<8xf32> at #kiln.external<"model.onnx.data", offset = 156544, length = 32>

func.func @forward(%input_ids: tensor<?x?xi64>, %position_ids: tensor<?x?xi64>,
                   %cache: !kiln.kv_cache<paged<16>, bf16, kv_heads = 2, head_dim = 16>)
    -> (tensor<?x?x128xbf16>, !kiln.kv_cache<paged<16>, bf16, kv_heads = 2, head_dim = 16>) {
  %embed = kiln.weight @model.embed_tokens.weight : tensor<128x64xbf16>
  %h = kiln.embedding %embed, %input_ids : tensor<128x64xbf16>, tensor<?x?xi64> -> tensor<?x?x64xbf16>

  // Attention.
  %ln1_w = kiln.weight @model.layers.0.input_layernorm.weight : tensor<64xbf16>
  %x = kiln.rms_norm %h, %ln1_w {epsilon = 1.0e-05 : f32} : tensor<?x?x64xbf16>, tensor<64xbf16> -> tensor<?x?x64xbf16>
  %wqkv = kiln.weight @model.layers.0.self_attn.qkv_proj.weight : tensor<128x64xbf16>
  %qkv = kiln.matmul %x, %wqkv {transpose_b} : tensor<?x?x64xbf16>, tensor<128x64xbf16> -> tensor<?x?x128xbf16>
  %q2 = kiln.slice %qkv {axes = array<i64: 2>, starts = array<i64: 0>, ends = array<i64: 64>, steps = array<i64: 1>} : tensor<?x?x128xbf16> -> tensor<?x?x64xbf16>
  %k2 = kiln.slice %qkv {axes = array<i64: 2>, starts = array<i64: 64>, ends = array<i64: 96>, steps = array<i64: 1>} : tensor<?x?x128xbf16> -> tensor<?x?x32xbf16>
  %v2 = kiln.slice %qkv {axes = array<i64: 2>, starts = array<i64: 96>, ends = array<i64: 128>, steps = array<i64: 1>} : tensor<?x?x128xbf16> -> tensor<?x?x32xbf16>
  // Shape computations as exporters write them: Shape -> Gather -> Concat.
  %shape = kiln.shape_of %x : tensor<?x?x64xbf16> -> tensor<3xi64>
  %bs = kiln.slice %shape {axes = array<i64: 0>, starts = array<i64: 0>, ends = array<i64: 2>, steps = array<i64: 1>} : tensor<3xi64> -> tensor<2xi64>
  %qh = arith.constant dense<[4, 16]> : tensor<2xi64>
  %kvh = arith.constant dense<[2, 16]> : tensor<2xi64>
  %qshape = kiln.concat %bs, %qh {axis = 0 : i64} : (tensor<2xi64>, tensor<2xi64>) -> tensor<4xi64>
  %kvshape = kiln.concat %bs, %kvh {axis = 0 : i64} : (tensor<2xi64>, tensor<2xi64>) -> tensor<4xi64>
  %q = kiln.reshape %q2 shape(%qshape : tensor<4xi64>) : tensor<?x?x64xbf16> -> tensor<?x?x4x16xbf16>
  %k = kiln.reshape %k2 shape(%kvshape : tensor<4xi64>) : tensor<?x?x32xbf16> -> tensor<?x?x2x16xbf16>
  %v = kiln.reshape %v2 shape(%kvshape : tensor<4xi64>) : tensor<?x?x32xbf16> -> tensor<?x?x2x16xbf16>
  %cos = kiln.weight @rope.cos_cache : tensor<512x8xf32>
  %sin = kiln.weight @rope.sin_cache : tensor<512x8xf32>
  %cos2 = kiln.weight @rope.cos_cache : tensor<512x8xf32>
  %qr = kiln.rope %q, %cos, %sin positions(%position_ids) : tensor<?x?x4x16xbf16>, tensor<512x8xf32>, tensor<512x8xf32>, tensor<?x?xi64> -> tensor<?x?x4x16xbf16>
  %kr = kiln.rope %k, %cos2, %sin positions(%position_ids) : tensor<?x?x2x16xbf16>, tensor<512x8xf32>, tensor<512x8xf32>, tensor<?x?xi64> -> tensor<?x?x2x16xbf16>
  %cache1 = kiln.kv_cache_append %cache, %kr, %v : !kiln.kv_cache<paged<16>, bf16, kv_heads = 2, head_dim = 16>, tensor<?x?x2x16xbf16>, tensor<?x?x2x16xbf16>
  %attn = kiln.attention %qr cache(%cache1) {mask = #kiln.mask<causal>} : (tensor<?x?x4x16xbf16>, !kiln.kv_cache<paged<16>, bf16, kv_heads = 2, head_dim = 16>) -> tensor<?x?x4x16xbf16>
  %attn_t = kiln.transpose %attn [0, 1, 2, 3] : tensor<?x?x4x16xbf16> -> tensor<?x?x4x16xbf16>
  %oshape = kiln.concat %bs, %qh {axis = 0 : i64} : (tensor<2xi64>, tensor<2xi64>) -> tensor<4xi64>
  %hshape = kiln.slice %oshape {axes = array<i64: 0>, starts = array<i64: 0>, ends = array<i64: 3>, steps = array<i64: 1>} : tensor<4xi64> -> tensor<3xi64>
  %o2 = kiln.reshape %attn_t shape(%shape : tensor<3xi64>) : tensor<?x?x4x16xbf16> -> tensor<?x?x64xbf16>
  %wo = kiln.weight @model.layers.0.self_attn.o_proj.weight : tensor<64x64xbf16>
  %o = kiln.matmul %o2, %wo {transpose_b} : tensor<?x?x64xbf16>, tensor<64x64xbf16> -> tensor<?x?x64xbf16>
  %h1 = kiln.add %h, %o : (tensor<?x?x64xbf16>, tensor<?x?x64xbf16>) -> tensor<?x?x64xbf16>

  // MLP.
  %ln2_w = kiln.weight @model.layers.0.post_attention_layernorm.weight : tensor<64xbf16>
  %x2 = kiln.rms_norm %h1, %ln2_w {epsilon = 1.0e-05 : f32} : tensor<?x?x64xbf16>, tensor<64xbf16> -> tensor<?x?x64xbf16>
  %wgu = kiln.weight @model.layers.0.mlp.gate_up_proj.weight : tensor<344x64xbf16>
  %wd = kiln.weight @model.layers.0.mlp.down_proj.weight : tensor<64x172xbf16>
  %m = kiln.gated_mlp silu %x2, gate_up(%wgu) down(%wd) {transpose_weights} : (tensor<?x?x64xbf16>, tensor<344x64xbf16>, tensor<64x172xbf16>) -> tensor<?x?x64xbf16>
  %h2 = kiln.add %h1, %m : (tensor<?x?x64xbf16>, tensor<?x?x64xbf16>) -> tensor<?x?x64xbf16>

  // Head.
  %nw = kiln.weight @model.norm.weight : tensor<64xbf16>
  %hn = kiln.rms_norm %h2, %nw {epsilon = 1.0e-05 : f32} : tensor<?x?x64xbf16>, tensor<64xbf16> -> tensor<?x?x64xbf16>
  %lm = kiln.weight @lm_head.weight : tensor<128x64xbf16>
  %logits = kiln.matmul %hn, %lm {transpose_b} : tensor<?x?x64xbf16>, tensor<128x64xbf16> -> tensor<?x?x128xbf16>
  return %logits, %cache1 : tensor<?x?x128xbf16>, !kiln.kv_cache<paged<16>, bf16, kv_heads = 2, head_dim = 16>
}
