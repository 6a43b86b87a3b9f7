// RUN: kiln-opt %s --split-input-file --verify-diagnostics

// One case per verifier diagnostic of every kiln attribute and type.

// expected-error @+1 {{storage type must be i4, ui4, i8, ui8, f8E4M3FN or f8E5M2, found 'f32'}}
func.func @f(%q: !kiln.qtensor<4x4, #kiln.quant<storage = f32, expressed = f16, block = [1, 0], scale = f16>>)

// -----

// expected-error @+1 {{storage type must be i4, ui4, i8, ui8, f8E4M3FN or f8E5M2, found 'si8'}}
func.func @f(%q: !kiln.qtensor<4x4, #kiln.quant<storage = si8, expressed = f16, block = [1, 0], scale = f16>>)

// -----

// expected-error @+1 {{expressed type must be f32, f16 or bf16, found 'i8'}}
func.func @f(%q: !kiln.qtensor<4x4, #kiln.quant<storage = i8, expressed = i8, block = [1, 0], scale = f16>>)

// -----

// expected-error @+1 {{block sizes must be non-negative, found -1}}
func.func @f(%q: !kiln.qtensor<4x4, #kiln.quant<storage = i8, expressed = f16, block = [1, -1], scale = f16>>)

// -----

// expected-error @+1 {{scale type must be a float type, found 'i8'}}
func.func @f(%q: !kiln.qtensor<4x4, #kiln.quant<storage = i8, expressed = f16, block = [1, 0], scale = i8>>)

// -----

// expected-error @+1 {{float storage 'f8E4M3FN' takes no zero point}}
func.func @f(%q: !kiln.qtensor<4x4, #kiln.quant<storage = f8E4M3FN, expressed = f16, block = [1, 0], scale = f16, zero_point = f8E4M3FN>>)

// -----

// expected-error @+1 {{zero point type 'ui8' does not match storage type 'ui4'}}
func.func @f(%q: !kiln.qtensor<4x4, #kiln.quant<storage = ui4, expressed = f16, block = [1, 0], scale = f16, zero_point = ui8>>)

// -----

// expected-error @+1 {{quant block has 1 entries but the qtensor has rank 2}}
func.func @f(%q: !kiln.qtensor<4x4, #kiln.quant<storage = i8, expressed = f16, block = [0], scale = f16>>)

// -----

// expected-error @+1 {{external storage location must not be empty}}
kiln.weight_decl @w : tensor<2xf32> at #kiln.external<"", offset = 0, length = 8>

// -----

// expected-error @+1 {{external storage range offset 18446744073709551615 + length 8 overflows}}
kiln.weight_decl @w : tensor<2xf32> at #kiln.external<"w.bin", offset = 18446744073709551615, length = 8>

// -----

// expected-error @+1 {{sliding_window mask needs window > 0}}
func.func @f() attributes {m = #kiln.mask<sliding_window>}

// -----

// expected-error @+1 {{window and sink apply only to a sliding_window mask, not to causal}}
func.func @f() attributes {m = #kiln.mask<causal, window = 128>}

// -----

// expected-error @+1 {{mask window and sink must be non-negative, found window = 16, sink = -4}}
func.func @f() attributes {m = #kiln.mask<sliding_window, window = 16, sink = -4>}

// -----

// expected-error @+1 {{block_sparse needs q_block > 0 and kv_block > 0, found q_block = 64, kv_block = 0}}
func.func @f() attributes {s = #kiln.sparsity<block_sparse, q_block = 64>}

// -----

// expected-error @+1 {{vertical_slash needs q_block > 0 and no kv_block, found q_block = 64, kv_block = 64}}
func.func @f() attributes {s = #kiln.sparsity<vertical_slash, q_block = 64, kv_block = 64>}

// -----

// expected-error @+1 {{token_topk takes no block sizes}}
func.func @f() attributes {s = #kiln.sparsity<token_topk, q_block = 64>}

// -----

// expected-error @+1 {{paged KV cache needs a block size >= 1, found 0}}
func.func @f(%c: !kiln.kv_cache<paged<0>, bf16, kv_heads = 2, head_dim = 64>)

// -----

// expected-error @+1 {{expected KV layout 'contiguous' or 'paged<N>', found 'blocked'}}
func.func @f(%c: !kiln.kv_cache<blocked, bf16, kv_heads = 2, head_dim = 64>)

// -----

// expected-error @+1 {{kv_heads must be positive, found 0}}
func.func @f(%c: !kiln.kv_cache<contiguous, bf16, kv_heads = 0, head_dim = 64>)

// -----

// expected-error @+1 {{head dims must be positive, found head_dim = 64, v_head_dim = 0}}
func.func @f(%c: !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64, v_head_dim = 0>)

// -----

// expected-error @+1 {{KV cache element type must be f32, f16, bf16, i8, i4, f8E4M3FN or f8E5M2, found 'i32'}}
func.func @f(%c: !kiln.kv_cache<contiguous, i32, kv_heads = 2, head_dim = 64>)

// -----

// expected-error @+1 {{a 'bf16' KV cache takes no quant scheme}}
func.func @f(%c: !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = bf16, block = [1, 1, 1, 0], scale = f32>>)

// -----

// expected-error @+1 {{a 'i8' KV cache needs a quant scheme}}
func.func @f(%c: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64>)

// -----

// expected-error @+1 {{quant storage type 'i4' does not match the cache element type 'i8'}}
func.func @f(%c: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i4, expressed = bf16, block = [1, 1, 1, 0], scale = f32>>)

// -----

// expected-error @+1 {{KV quant block must have 4 entries ([batch, tokens, kv_heads, head_dim]), found 2}}
func.func @f(%c: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = bf16, block = [1, 0], scale = f32>>)

// -----

// expected-error @+1 {{KV quant block must be [1, 1, 1, g] (per token and head) or [0, 0, 1, g] (static per head), found [1, 0, 1, 0]}}
func.func @f(%c: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = bf16, block = [1, 0, 1, 0], scale = f32>>)

// -----

// A scale shared across heads is refused.
// expected-error @+1 {{KV quant block must be [1, 1, 1, g]}}
func.func @f(%c: !kiln.kv_cache<paged<16>, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = bf16, block = [1, 1, 0, 0], scale = f32>>)

// -----

// expected-error @+1 {{KV quant group 24 does not divide head_dim 64 and v_head_dim 64}}
func.func @f(%c: !kiln.kv_cache<paged<16>, i4, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i4, expressed = f32, block = [1, 1, 1, 24], scale = f16>>)

// -----

// The group must divide v_head_dim too.
// expected-error @+1 {{KV quant group 32 does not divide head_dim 64 and v_head_dim 48}}
func.func @f(%c: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, v_head_dim = 48, quant = #kiln.quant<storage = i8, expressed = f32, block = [1, 1, 1, 32], scale = f16>>)

// -----

// expected-error @+1 {{a 4-bit KV cache packs two values per byte and needs even head dims, found 15 and 15}}
func.func @f(%c: !kiln.kv_cache<contiguous, i4, kv_heads = 2, head_dim = 15, quant = #kiln.quant<storage = i4, expressed = f32, block = [1, 1, 1, 0], scale = f16>>)

// -----

// expected-error @+1 {{KV quantization is symmetric (no zero point)}}
func.func @f(%c: !kiln.kv_cache<contiguous, i8, kv_heads = 2, head_dim = 64, quant = #kiln.quant<storage = i8, expressed = f32, block = [1, 1, 1, 0], scale = f16, zero_point = i8>>)

// -----

// expected-error @+1 {{expected 'v_head_dim' or 'quant'}}
func.func @f(%c: !kiln.kv_cache<contiguous, bf16, kv_heads = 2, head_dim = 64, layers = 4>)
