//===- Passes.td - every kiln pass, grouped by stage -------*- tablegen -*-===//

#ifndef KILN_PASSES_PASSES_TD
#define KILN_PASSES_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Graph stage
//===----------------------------------------------------------------------===//

def DecomposePass : Pass<"kiln-decompose", "mlir::func::FuncOp"> {
  let summary = "Expand composite kiln ops into primitive kiln ops";
  let description = [{
    Rewrites `kiln.rms_norm`, `kiln.layer_norm`, `kiln.softmax`,
    `kiln.activation`, `kiln.glu` and `kiln.gated_mlp` into elementwise ops,
    reductions and matmuls that compute the same function (norms in f32, as
    the composite ops specify). The decomposed form is what a model looks
    like before fusion: it serves as a reference for the fusion passes (fuse
    after decompose must give back the composite op) and lets a backend
    without a fused kernel run the op.

    `ops` limits the rewrite to the listed op names (without the `kiln.`
    prefix); empty means all.
  }];
  let dependentDialects = ["mlir::arith::ArithDialect",
                           "mlir::kiln::KilnDialect"];
  let options = [
    ListOption<"ops", "ops", "std::string",
               "Composite ops to decompose (e.g. rms_norm,gated_mlp); all when empty">
  ];
}

//===----------------------------------------------------------------------===//
// Graph stage: recognition and fusion
//===----------------------------------------------------------------------===//

def FuseNormsPass : Pass<"kiln-fuse-norms", "mlir::func::FuncOp"> {
  let summary = "Recognize decomposed RMSNorm and LayerNorm";
  let description = [{
    Rewrites the op-by-op normalizations exporters write into `kiln.rms_norm`
    and `kiln.layer_norm`:

    * RMSNorm: `w * (x * rsqrt(mean(x^2, -1) + eps))`, with `x^2` as
      `pow(x, 2)` or `x * x`, the inverse square root as `rsqrt`,
      `reciprocal(sqrt)` or `1 / sqrt`, or a division by `sqrt`; either
      operand order; an f32 island (`cast` in, `cast` back) is absorbed.
    * LayerNorm: `w * ((x - mean(x)) * rsqrt(mean((x - mean(x))^2) + eps))`,
      plus a following `+ b`.
    * Residual + norm: `rms_norm(a + b)` with `a`, `b` and the sum of one
      type becomes `kiln.add_rms_norm`, whose sum replaces the add for its
      other users (the residual stream).

    Not rewritten (near-misses): `eps` added outside the square root, a
    statistic over another dimension than the last, different tensors in the
    statistic and the scaling, a negative or non-constant `eps`, a weight that
    is not a vector over the normalized dimension. The fused op's location
    fuses the locations (ONNX node names) of every op it replaces.
  }];
  let dependentDialects = ["mlir::kiln::KilnDialect"];
}

def FuseActivationsPass : Pass<"kiln-fuse-activations", "mlir::func::FuncOp"> {
  let summary = "Recognize SiLU and GELU written op by op";
  let description = [{
    `x * sigmoid(x)` becomes `kiln.activation silu`; the tanh approximation
    `0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))` becomes
    `gelu_tanh` and `0.5 * x * (1 + erf(x / sqrt(2)))` becomes `gelu`, with
    the factors in any grouping and order and the constants within a
    relative 1e-4 (exporters round them differently). A constant outside
    that, or `sigmoid(y) * x` for another `y`, is left alone.
  }];
  let dependentDialects = ["mlir::kiln::KilnDialect"];
}

def FuseGatedMlpPass : Pass<"kiln-fuse-gated-mlp", "mlir::func::FuncOp"> {
  let summary = "Fold act(x Wg) * (x Wu) into kiln.glu and the block into kiln.gated_mlp";
  let description = [{
    `act(x @ Wg) * (x @ Wu)` (SwiGLU with silu, GeGLU with gelu/gelu_tanh)
    becomes `kiln.glu`; `glu(...) @ Wd` then becomes one `kiln.gated_mlp`
    when the gate and up projections read the same `x`, no projection has a
    bias, every weight is rank 2 with the same orientation (`transpose_b`
    on all or none; quantized weights stay quantized) and the block returns
    `x`'s type. A product of an activation with something that is not a
    projection is not a GLU and is left alone.
  }];
  let dependentDialects = ["mlir::kiln::KilnDialect"];
}

def FuseRopePass : Pass<"kiln-fuse-rope", "mlir::func::FuncOp"> {
  let summary = "Recognize rotate-half and interleaved RoPE";
  let description = [{
    `x * cos + rotate(x) * sin` becomes `kiln.rope` when `rotate` is
    Llama's `rotate_half(x) = concat(-x[..., D/2:], x[..., :D/2])` or GPT-J's
    `rotate_every_two(x) = flatten(stack(-x[..., 1::2], x[..., ::2]), -2)`
    (then `interleaved`), on `[B, H, S, D]` heads with `[b, 1, S, D]` tables
    (between transposes to and from kiln's `[B, S, H, D]`) or on
    `[B, S, H, D]` heads with `[b, S, 1, D]` tables (b = 1 or the batch).
    The tables must provably repeat what rope reads: their first half in
    their second for rotate-half (cos/sin of `concat(f, f)`), each element
    in pairs for the interleaved form (repeat_interleave as reshape /
    expand / reshape), through elementwise maps, per-row scaling, reshapes
    that keep the last dimension, gathers by position, or a constant table
    with that repetition. rope then reads the first half, or every other
    element. Any other rotation or table is left alone.
  }];
  let dependentDialects = ["mlir::kiln::KilnDialect"];
}

def FuseAttentionPass : Pass<"kiln-fuse-attention", "mlir::func::FuncOp"> {
  let summary = "Recognize scaled dot-product attention written as matmuls and softmax";
  let description = [{
    `softmax(softcap(scale * q @ k^T) + mask) @ v` on `[B, H, S, D]` heads
    becomes one `kiln.attention`: the scale may be split over q, k^T and the
    scores (multiplications or divisions by constants); the softcap is
    `tanh(s / c) * c`; the mask is any float tensor added to the scores (a
    `where(m, 0, -inf)` passes the boolean `m`); the `where(isnan(p), 0, p)`
    guard of sdpa exports is absorbed (kiln.attention gives a row with no
    visible key zeros); `k^T` is a transpose of the last two dimensions or
    dynamo's flatten / transpose / unflatten; keys and values repeated by
    `repeat_kv` (reshape, expand of a unit dimension, reshape) are read
    un-repeated, as grouped-query attention.

    A boolean mask (fused or imported) with a causal conjunct, keys
    `arange(past + S)` against queries `arange(S) + past` compared with `<=`,
    becomes mask kind `causal` (kiln's end-aligned causal; kernels skip the
    keys past each query) with the other conjuncts (padding) kept as the
    explicit mask. A strict comparison, queries not shifted by the past, or a
    key count other than `past + S` stay explicit masks. A further conjunct
    `j > q - W` over the same key and query indices (Gemma 2's and Mistral's
    sliding layers) makes it `sliding_window` with window `W`. A float mask
    `where(m, 0, v)` with `v = -inf` or `v <= -1e30` (dynamo's finfo.min)
    passes `m`; it differs only on rows where every key is masked (left
    padding), which kiln.attention gives zeros.

    Not rewritten: a scale or other op between the softcap and the mask, a
    softmax over another axis, non-4-D operands, keys and values with
    different head counts.
  }];
  let dependentDialects = ["mlir::kiln::KilnDialect"];
}

def FuseProjectionsPass : Pass<"kiln-fuse-projections", "mlir::func::FuncOp"> {
  let summary = "Fuse sibling projections (q/k/v, gate/up) into one matmul";
  let description = [{
    Matmuls of the same input by stored rank-2 weights (`kiln.weight`) with
    the same orientation, element type and input width, all with stored
    biases or none, become one matmul by the weights concatenated along the
    output dimension (biases likewise), sliced back into each result: the
    canonical form's fused qkv projection. A `kiln.gated_mlp` with separate
    stored gate and up weights gets them as one `gate_up` weight (gate
    columns first). Quantized weights and weights computed in the graph are
    left alone. The compiler records a concatenation of weights as a packed
    weight the runtime builds at load time from its parts.
  }];
  let dependentDialects = ["mlir::kiln::KilnDialect"];
}

def FuseElementwisePass : Pass<"kiln-fuse-elementwise", "mlir::func::FuncOp"> {
  let summary = "Fold chains of elementwise ops into one kiln.elementwise";
  let description = [{
    Every maximal tree of float elementwise kiln ops (add, sub, mul, div,
    max, min, pow, neg, abs, exp, log, sqrt, rsqrt, reciprocal, tanh, sin,
    cos, erf, float casts, and kiln.elementwise itself) whose inner values
    have no other reader becomes one `kiln.elementwise`: the chain on
    scalars, reading each input and writing the result once. Inputs keep
    NumPy broadcasting; scalar splat constants move into the body. Single
    ops stay as they are. Runs after the named fusions, on what they leave.
  }];
  let dependentDialects = ["mlir::kiln::KilnDialect", "mlir::arith::ArithDialect",
                           "mlir::math::MathDialect"];
}

def FormKvCachePass : Pass<"kiln-form-kv-cache", "mlir::func::FuncOp"> {
  let summary = "Turn past/present KV concats into in-place kiln.kv_cache appends";
  let description = [{
    A layer whose past key and value arguments (`kiln.kv` role past) are
    only concatenated with the new keys/values along the sequence axis (and
    read by `shape_of`), and whose presents are only returned and fed,
    transposed to BSHD, to `kiln.attention`, gets one `!kiln.kv_cache`
    argument and result instead of its four tensors. The new keys and values
    are written by `kiln.kv_cache_append`, which the runtime does in place,
    and attention reads `cache(...)`: no step copies the cache.

    The cache argument and result carry `kiln.kv = {layer, role = "cache"}`
    and, under `kiln.cache_io`, the attributes and types of the tensors they
    replace, so the artifact still lists the ONNX past and present tensors.
    Windowed caches and layers whose tensors are read otherwise stay as they
    are (`verbose` says why, as remarks).
  }];
  let options = [
    Option<"verbose", "verbose", "bool", /*default=*/"false",
           "Emit a remark for each layer left as tensors, with the reason">
  ];
  let statistics = [
    Statistic<"numFormed", "formed-caches", "Number of layers given a KV cache">
  ];
  let dependentDialects = ["mlir::kiln::KilnDialect", "mlir::arith::ArithDialect"];
}

def KvLayoutPass : Pass<"kiln-kv-layout", "mlir::func::FuncOp"> {
  let summary = "Give every KV cache its storage layout and element type";
  let description = [{
    Rewrites the type of every `!kiln.kv_cache` value of the function (its
    arguments, the results of `kiln.kv_cache_append`, the returned caches):

    * `layout=paged` with `block-size=N` stores each sequence's keys and
      values in blocks of N tokens addressed through a per-sequence block
      table (any N >= 1; `contiguous` keeps one slab per sequence).
    * `dtype=i8|f8E4M3FN|i4` quantizes the cache: `kiln.kv_cache_append`
      quantizes each appended token per KV head (or per `group` elements
      along the head dimension) with a scale of type `scale-type` computed
      from the data, and `kiln.attention` dequantizes inside its inner loop.
      The cache's compute type (what appends take and attention reads) stays
      the model's. `i4` packs two values per byte and defaults to groups of
      32 (when 32 divides the head dims).

    Caches already quantized keep their scheme. The options compose: any
    layout with any element type. Refusals (a group that does not divide the
    head dims, a block size below 1, an unknown type) are errors on the
    function.
  }];
  let options = [
    Option<"layout", "layout", "std::string", /*default=*/"\"contiguous\"",
           "Storage layout: contiguous or paged">,
    Option<"blockSize", "block-size", "int64_t", /*default=*/"16",
           "Tokens per block of a paged cache">,
    Option<"dtype", "dtype", "std::string", /*default=*/"\"\"",
           "Element type: empty (the model's), i8, f8E4M3FN or i4">,
    Option<"group", "group", "int64_t", /*default=*/"0",
           "Elements per scale along the head dim (0: i8/f8 one per KV head, "
           "i4 32)">,
    Option<"scaleType", "scale-type", "std::string", /*default=*/"\"f16\"",
           "Scale element type of a quantized cache: f16 or f32">
  ];
  let statistics = [
    Statistic<"numRewritten", "rewritten-caches", "Number of KV-cache arguments given the layout">
  ];
  let dependentDialects = ["mlir::kiln::KilnDialect"];
}

def QuantizeWeightsPass : Pass<"kiln-quantize-weights", "mlir::func::FuncOp"> {
  let summary = "Quantize the weights of projections and gated MLPs";
  let description = [{
    Weight-only quantization. Every float weight of a `kiln.matmul` (its
    `b`) and of a `kiln.gated_mlp` that is computed from weights and
    constants alone (`kiln.weight`, `arith.constant`, and `kiln.concat` /
    `kiln.transpose` of those: sibling projections fused by the graph stage)
    becomes a `kiln.quantize` of its output-major form `[N, K]` (a
    `kiln.transpose` is inserted for `[K, N]` weights, and the op is marked
    `transpose_b` / `transpose_weights`), so that every quantization block
    runs along K:

    * `scheme=w8a16`: `i8`, one scale per output channel (`block = [1, 0]`),
      symmetric.
    * `scheme=w4a16`: `i4` in groups of `group` along K (`block = [1, g]`,
      default 128), symmetric; with `zero-points`, `ui4` with a `ui4` zero
      point per group (asymmetric, min/max).

    * `scheme=fp8`: `f8E4M3FN` weights with `f32` scales per output channel
      (`block = [1, 0]`) or per tensor (`weight-scales=tensor`), and
      `f8E4M3FN` activations: every quantized matmul's input `a` becomes a
      `kiln.quantize` whose scales are computed at run time per token
      (`block = [1, ..., 1, 0]`) or per tensor (`activations=tensor`).
      `kiln-compile --calib` turns them into static per-tensor scales from a
      calibration run. A `kiln.gated_mlp` is refused (the activation between
      its projections would stay unquantized inside it): the graph pipeline
      runs this scheme with gated MLPs unfused.
    * `scheme=w4a4`: `i4` weights per output channel and `i4` activations
      with dynamic per-token scales (`block = [1, ..., 1, 0]`). With
      `rotation=hadamard` (the default) both sides of every quantized matmul
      are rotated along K first by `kiln.hadamard` (blocks of the largest
      power of two dividing K): the weight's rotation is folded into the
      packed values by kiln-compile, the activation's runs online. The
      rotation is orthonormal and its own inverse, so the product is
      unchanged; it spreads outlier channels over the block before int4
      rounding. `rotation=<file.safetensors>` uses square orthogonal matrices
      from the file instead (learned rotations, as SpinQuant produces them;
      one per size, checked `R R^T = I`): a matmul whose K the size of a
      matrix divides is rotated by `kiln.rotate` with the largest such
      matrix on the block diagonal, other K by Hadamard blocks. Gated MLPs
      are refused as for fp8. K must be even.

    w8a16/w4a16 scales have the weight's element type; all scales are
    computed from the weight's values;
    kiln-compile evaluates these `kiln.quantize` ops when it writes the
    artifact, which then holds the packed values and scales in the layout
    the kernels read instead of the float weight. Weights or ONNX nodes
    whose name matches one of the `exclude` regular expressions stay float
    (e.g. `exclude=lm_head`). A gated MLP is quantized whole or not at all.
    Refusals are errors: a group size that does not divide K (naming the
    weight), an odd group, an unknown scheme.
  }];
  let options = [
    Option<"scheme", "scheme", "std::string", /*default=*/"\"w8a16\"",
           "w8a16, w4a16, fp8 or w4a4">,
    Option<"group", "group", "int64_t", /*default=*/"128",
           "w4a16: weights along K per scale">,
    Option<"zeroPoints", "zero-points", "bool", /*default=*/"false",
           "w4a16: unsigned storage with a zero point per group">,
    Option<"weightScales", "weight-scales", "std::string", /*default=*/"\"channel\"",
           "fp8: weight scales per output channel or per tensor">,
    Option<"activations", "activations", "std::string", /*default=*/"\"token\"",
           "fp8: dynamic activation scales per token or per tensor">,
    Option<"rotation", "rotation", "std::string", /*default=*/"\"\"",
           "w4a4: rotate K on both sides of each matmul: hadamard (the default), "
           "none, or a .safetensors file of orthogonal matrices (SpinQuant)">,
    ListOption<"exclude", "exclude", "std::string",
               "Regular expressions: weights or ONNX nodes that stay float">
  ];
  let statistics = [
    Statistic<"numQuantized", "quantized-weights", "Number of weights quantized">,
    Statistic<"numActivations", "quantized-activations",
              "Number of matmul inputs quantized (fp8)">
  ];
  let dependentDialects = ["mlir::kiln::KilnDialect"];
}

def RaggedBatchPass : Pass<"kiln-ragged-batch", "mlir::func::FuncOp"> {
  let summary = "Make a cached graph run ragged batches (continuous batching)";
  let description = [{
    Rewrites a function whose every attention reads a `!kiln.kv_cache` so
    that one run can take the new tokens of many sequences flattened as a
    `[1, N]` batch, the runtime passing each sequence's offsets and lengths
    with the caches:

    * every `kiln.rope` takes its positions from the `position_ids`
      argument (added as `tensor<?x?xi64>` when the graph derives positions
      from other inputs, as onnxruntime-genai graphs do); ropes that read
      cos/sin tables computed from `position_ids` stay as they are;
    * every attention mask is dropped: a `causal` or `sliding_window`
      attention's `attn_mask` when it is computed from `attention_mask`,
      constants and shapes alone (padding, which a ragged batch has none
      of), and a `none` attention whose mask is `positions >= key index`
      (causal by position) becomes `causal`.

    The function gets `kiln.ragged`. Anything else (an attention on
    tensors, a mask of another form, an input still read afterwards other
    than for shapes) is an error naming the op and why.
  }];
  let dependentDialects = ["mlir::kiln::KilnDialect"];
}

def PruneWeightsPass : Pass<"kiln-prune-weights", "mlir::ModuleOp"> {
  let summary = "Remove weight declarations that no kiln.weight reads";
  let description = [{
    After fusion and dead-code elimination some weights are no longer read
    (a folded constant, an output nobody asked for). Their declarations are
    erased so the artifact neither stores nor binds them. `keep` names
    weights to keep even when unused.
  }];
  let options = [
    ListOption<"keep", "keep", "std::string",
               "Weight names to keep even when unread">
  ];
  let statistics = [
    Statistic<"numPruned", "pruned-weights", "Number of weight declarations removed">
  ];
}

#endif // KILN_PASSES_PASSES_TD
