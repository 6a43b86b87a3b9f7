#!/usr/bin/env python3
"""Writes small ONNX models for the importer's lit tests.

    gen_models.py NAME OUTDIR     writes OUTDIR/model.onnx (and data files)
    gen_models.py --list          names every model

Models are built with onnx.helper in the shapes real exporters write (see
shared/notes/onnx-llm-exports.md): a decomposed Llama block as the TorchScript
exporter emits it, onnxruntime-genai style normalization ops, and one model per
bad-input case. Weights are random with a fixed seed.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 1234
F = TensorProto.FLOAT
I64 = TensorProto.INT64


def rng():
    return np.random.default_rng(SEED)


def save(model, outdir, external=False, name="model.onnx"):
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, name)
    if external:
        onnx.save_model(model, path, save_as_external_data=True,
                        all_tensors_to_one_file=True,
                        location=name + ".data", size_threshold=256)
    else:
        onnx.save_model(model, path)
    return path


def make_model(graph, opsets=(("", 17),), ir_version=8):
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
        producer_name="kiln-test-gen", producer_version="1")
    model.ir_version = ir_version
    return model


def init(name, array):
    return numpy_helper.from_array(array, name)


# --------------------------------------------------------------------------
# A Llama decoder layer as torch.onnx.export (TorchScript, opset 17) writes it.
# --------------------------------------------------------------------------
def llama_torch_style(outdir):
    r = rng()
    hidden, heads, kv_heads, head_dim, ffn, vocab = 64, 4, 2, 16, 128, 256
    nodes, inits = [], []

    def w(name, *shape):
        inits.append(init(name, (r.standard_normal(shape) * 0.05).astype(np.float32)))
        return name

    def const(name, value, dtype=np.int64):
        inits.append(init(name, np.array(value, dtype=dtype)))
        return name

    def node(op, inputs, outputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0]

    w("model.embed_tokens.weight", vocab, hidden)
    node("Gather", ["model.embed_tokens.weight", "input_ids"], ["h0"],
         "/model/embed_tokens/Gather")

    def rms_norm(x, weight, prefix):
        # x.pow(2).mean(-1, keepdim) -> rsqrt -> x * . -> weight * .
        p = node("Pow", [x, const(prefix + "/Constant_output_0", 2.0, np.float32)],
                 [prefix + "/Pow_output_0"], prefix + "/Pow")
        m = node("ReduceMean", [p], [prefix + "/ReduceMean_output_0"],
                 prefix + "/ReduceMean", axes=[-1], keepdims=1)
        a = node("Add", [m, const(prefix + "/Constant_1_output_0", 1e-6, np.float32)],
                 [prefix + "/Add_output_0"], prefix + "/Add")
        s = node("Sqrt", [a], [prefix + "/Sqrt_output_0"], prefix + "/Sqrt")
        d = node("Div", [const(prefix + "/Constant_2_output_0", 1.0, np.float32), s],
                 [prefix + "/Div_output_0"], prefix + "/Div")
        n = node("Mul", [x, d], [prefix + "/Mul_output_0"], prefix + "/Mul")
        return node("Mul", [weight, n], [prefix + "/Mul_1_output_0"], prefix + "/Mul_1")

    L = "/model/layers.0"
    x = rms_norm("h0", w("model.layers.0.input_layernorm.weight", hidden),
                 L + "/input_layernorm")

    # Shape pieces used by every view(): batch and sequence from Shape/Gather.
    shp = node("Shape", [x], [L + "/self_attn/Shape_output_0"], L + "/self_attn/Shape")
    b = node("Gather", [shp, const(L + "/self_attn/Constant_output_0", 0)],
             [L + "/self_attn/Gather_output_0"], L + "/self_attn/Gather", axis=0)
    s = node("Gather", [shp, const(L + "/self_attn/Constant_1_output_0", 1)],
             [L + "/self_attn/Gather_1_output_0"], L + "/self_attn/Gather_1", axis=0)
    bu = node("Unsqueeze", [b, const(L + "/self_attn/axes0", [0])],
              [L + "/self_attn/Unsqueeze_output_0"], L + "/self_attn/Unsqueeze")
    su = node("Unsqueeze", [s, const(L + "/self_attn/axes1", [0])],
              [L + "/self_attn/Unsqueeze_1_output_0"], L + "/self_attn/Unsqueeze_1")

    def proj_heads(name, n_heads):
        y = node("MatMul", [x, w(f"onnx::MatMul_{name}", hidden, n_heads * head_dim)],
                 [f"{L}/self_attn/{name}_proj/MatMul_output_0"],
                 f"{L}/self_attn/{name}_proj/MatMul")
        shape = node("Concat", [bu, su, const(f"{L}/self_attn/{name}_h", [n_heads]),
                                const(f"{L}/self_attn/{name}_d", [head_dim])],
                     [f"{L}/self_attn/{name}_Concat_output_0"],
                     f"{L}/self_attn/{name}_Concat", axis=0)
        v = node("Reshape", [y, shape], [f"{L}/self_attn/{name}_Reshape_output_0"],
                 f"{L}/self_attn/{name}_Reshape")
        return node("Transpose", [v], [f"{L}/self_attn/{name}_Transpose_output_0"],
                    f"{L}/self_attn/{name}_Transpose", perm=[0, 2, 1, 3])

    q = proj_heads("q", heads)
    k = proj_heads("k", kv_heads)
    v = proj_heads("v", kv_heads)

    # RoPE, transformers < 4.38 style: cos/sin caches gathered by position.
    inv = 1.0 / (10000 ** (np.arange(0, head_dim, 2) / head_dim))
    freqs = np.outer(np.arange(128), inv)
    emb = np.concatenate([freqs, freqs], axis=-1)
    inits.append(init("cos_cached", np.cos(emb).astype(np.float32)))
    inits.append(init("sin_cached", np.sin(emb).astype(np.float32)))
    cos = node("Gather", ["cos_cached", "position_ids"], [L + "/rope/cos"], L + "/rope/Gather")
    sin = node("Gather", ["sin_cached", "position_ids"], [L + "/rope/sin"], L + "/rope/Gather_1")
    cos = node("Unsqueeze", [cos, const(L + "/rope/axes", [1])], [L + "/rope/cos_u"],
               L + "/rope/Unsqueeze")
    sin = node("Unsqueeze", [sin, const(L + "/rope/axes_1", [1])], [L + "/rope/sin_u"],
               L + "/rope/Unsqueeze_1")

    def rope(t, tag):
        half = head_dim // 2
        x1 = node("Slice", [t, const(f"{L}/{tag}/s0", [0]), const(f"{L}/{tag}/e0", [half]),
                            const(f"{L}/{tag}/a0", [-1]), const(f"{L}/{tag}/st0", [1])],
                  [f"{L}/{tag}/Slice_output_0"], f"{L}/{tag}/Slice")
        x2 = node("Slice", [t, const(f"{L}/{tag}/s1", [half]),
                            const(f"{L}/{tag}/e1", [np.iinfo(np.int64).max]),
                            const(f"{L}/{tag}/a1", [-1]), const(f"{L}/{tag}/st1", [1])],
                  [f"{L}/{tag}/Slice_1_output_0"], f"{L}/{tag}/Slice_1")
        n2 = node("Neg", [x2], [f"{L}/{tag}/Neg_output_0"], f"{L}/{tag}/Neg")
        rot = node("Concat", [n2, x1], [f"{L}/{tag}/Concat_output_0"], f"{L}/{tag}/Concat",
                   axis=-1)
        a = node("Mul", [t, cos], [f"{L}/{tag}/Mul_output_0"], f"{L}/{tag}/Mul")
        bb = node("Mul", [rot, sin], [f"{L}/{tag}/Mul_1_output_0"], f"{L}/{tag}/Mul_1")
        return node("Add", [a, bb], [f"{L}/{tag}/Add_output_0"], f"{L}/{tag}/Add")

    q = rope(q, "rope_q")
    k = rope(k, "rope_k")

    # KV cache: Concat(past, new) along the sequence axis.
    k = node("Concat", ["past_key_values.0.key", k], ["present.0.key"],
             L + "/self_attn/Concat_5", axis=2)
    v = node("Concat", ["past_key_values.0.value", v], ["present.0.value"],
             L + "/self_attn/Concat_6", axis=2)

    # repeat_kv: Unsqueeze -> Expand -> Reshape.
    def repeat_kv(t, tag):
        rep = heads // kv_heads
        u = node("Unsqueeze", [t, const(f"{L}/{tag}/ax", [2])], [f"{L}/{tag}/Unsqueeze_output_0"],
                 f"{L}/{tag}/Unsqueeze")
        tshape = node("Shape", [t], [f"{L}/{tag}/Shape_output_0"], f"{L}/{tag}/Shape")
        tlen = node("Gather", [tshape, const(f"{L}/{tag}/i2", 2)], [f"{L}/{tag}/len"],
                    f"{L}/{tag}/Gather", axis=0)
        tlen_u = node("Unsqueeze", [tlen, const(f"{L}/{tag}/ax0", [0])], [f"{L}/{tag}/len_u"],
                      f"{L}/{tag}/Unsqueeze_1")
        eshape = node("Concat", [bu, const(f"{L}/{tag}/kvh", [kv_heads]),
                                 const(f"{L}/{tag}/rep", [rep]), tlen_u,
                                 const(f"{L}/{tag}/hd", [head_dim])],
                      [f"{L}/{tag}/eshape"], f"{L}/{tag}/Concat", axis=0)
        e = node("Expand", [u, eshape], [f"{L}/{tag}/Expand_output_0"], f"{L}/{tag}/Expand")
        rshape = node("Concat", [bu, const(f"{L}/{tag}/h", [heads]), tlen_u,
                                 const(f"{L}/{tag}/hd2", [head_dim])],
                      [f"{L}/{tag}/rshape"], f"{L}/{tag}/Concat_1", axis=0)
        return node("Reshape", [e, rshape], [f"{L}/{tag}/Reshape_output_0"], f"{L}/{tag}/Reshape")

    k = repeat_kv(k, "repeat_k")
    v = repeat_kv(v, "repeat_v")

    kt = node("Transpose", [k], [L + "/self_attn/Transpose_3_output_0"],
              L + "/self_attn/Transpose_3", perm=[0, 1, 3, 2])
    sc = node("MatMul", [q, kt], [L + "/self_attn/MatMul_output_0"], L + "/self_attn/MatMul")
    sc = node("Div", [sc, const(L + "/self_attn/Constant_scale", 4.0, np.float32)],
              [L + "/self_attn/Div_output_0"], L + "/self_attn/Div")
    sc = node("Add", [sc, "attention_bias"], [L + "/self_attn/Add_output_0"],
              L + "/self_attn/Add")
    p = node("Softmax", [sc], [L + "/self_attn/Softmax_output_0"], L + "/self_attn/Softmax",
             axis=-1)
    o = node("MatMul", [p, v], [L + "/self_attn/MatMul_1_output_0"], L + "/self_attn/MatMul_1")
    o = node("Transpose", [o], [L + "/self_attn/Transpose_4_output_0"],
             L + "/self_attn/Transpose_4", perm=[0, 2, 1, 3])
    oshape = node("Concat", [bu, su, const(L + "/self_attn/hid", [hidden])],
                  [L + "/self_attn/Concat_7_output_0"], L + "/self_attn/Concat_7", axis=0)
    o = node("Reshape", [o, oshape], [L + "/self_attn/Reshape_3_output_0"],
             L + "/self_attn/Reshape_3")
    o = node("MatMul", [o, w("onnx::MatMul_o", hidden, hidden)],
             [L + "/self_attn/o_proj/MatMul_output_0"], L + "/self_attn/o_proj/MatMul")
    h1 = node("Add", ["h0", o], [L + "/Add_output_0"], L + "/Add")

    x2 = rms_norm(h1, w("model.layers.0.post_attention_layernorm.weight", hidden),
                  L + "/post_attention_layernorm")
    g = node("MatMul", [x2, w("onnx::MatMul_gate", hidden, ffn)],
             [L + "/mlp/gate_proj/MatMul_output_0"], L + "/mlp/gate_proj/MatMul")
    sg = node("Sigmoid", [g], [L + "/mlp/act_fn/Sigmoid_output_0"], L + "/mlp/act_fn/Sigmoid")
    g = node("Mul", [g, sg], [L + "/mlp/act_fn/Mul_output_0"], L + "/mlp/act_fn/Mul")
    u = node("MatMul", [x2, w("onnx::MatMul_up", hidden, ffn)],
             [L + "/mlp/up_proj/MatMul_output_0"], L + "/mlp/up_proj/MatMul")
    m = node("Mul", [g, u], [L + "/mlp/Mul_output_0"], L + "/mlp/Mul")
    m = node("MatMul", [m, w("onnx::MatMul_down", ffn, hidden)],
             [L + "/mlp/down_proj/MatMul_output_0"], L + "/mlp/down_proj/MatMul")
    h2 = node("Add", [h1, m], [L + "/Add_1_output_0"], L + "/Add_1")
    hn = rms_norm(h2, w("model.norm.weight", hidden), "/model/norm")
    node("MatMul", [hn, w("onnx::MatMul_lm_head", hidden, vocab)], ["logits"],
         "/lm_head/MatMul")

    inputs = [
        helper.make_tensor_value_info("input_ids", I64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("position_ids", I64, ["batch_size", "sequence_length"]),
        helper.make_tensor_value_info("attention_bias", F,
                                      ["batch_size", 1, "sequence_length", "total_sequence_length"]),
        helper.make_tensor_value_info("past_key_values.0.key", F,
                                      ["batch_size", kv_heads, "past_sequence_length", head_dim]),
        helper.make_tensor_value_info("past_key_values.0.value", F,
                                      ["batch_size", kv_heads, "past_sequence_length", head_dim]),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", F, ["batch_size", "sequence_length", vocab]),
        helper.make_tensor_value_info("present.0.key", F,
                                      ["batch_size", kv_heads, "total_sequence_length", head_dim]),
        helper.make_tensor_value_info("present.0.value", F,
                                      ["batch_size", kv_heads, "total_sequence_length", head_dim]),
    ]
    graph = helper.make_graph(nodes, "main_graph", inputs, outputs, inits)
    model = make_model(graph, opsets=(("", 17),))
    onnx.checker.check_model(model)
    save(model, outdir, external=True)


# --------------------------------------------------------------------------
# onnxruntime-genai style normalization ops.
# --------------------------------------------------------------------------
def genai_norms(outdir):
    r = rng()
    hidden = 32
    inits = [init("model.layers.0.input_layernorm.weight",
                  r.standard_normal(hidden).astype(np.float32)),
             init("model.layers.0.post_attention_layernorm.weight",
                  r.standard_normal(hidden).astype(np.float32))]
    nodes = [
        helper.make_node("SimplifiedLayerNormalization",
                         ["x", "model.layers.0.input_layernorm.weight"], ["n0"],
                         name="/model/layers.0/input_layernorm/LayerNorm",
                         axis=-1, epsilon=1e-6, stash_type=1),
        helper.make_node("SkipSimplifiedLayerNormalization",
                         ["n0", "skip", "model.layers.0.post_attention_layernorm.weight"],
                         ["n1", "", "", "residual"],
                         name="/model/layers.0/post_attention_layernorm/SkipLayerNorm",
                         domain="com.microsoft", epsilon=1e-6),
    ]
    shape = ["batch_size", "sequence_length", hidden]
    graph = helper.make_graph(
        nodes, "genai", [helper.make_tensor_value_info("x", F, shape),
                         helper.make_tensor_value_info("skip", F, shape)],
        [helper.make_tensor_value_info("n1", F, shape),
         helper.make_tensor_value_info("residual", F, shape)], inits)
    save(make_model(graph, opsets=(("", 21), ("com.microsoft", 1)), ir_version=10), outdir)


# --------------------------------------------------------------------------
# A decoder layer as onnxruntime-genai's model builder writes it (int4):
# SimplifiedLayerNormalization, packed QKV MatMulNBits, GroupQueryAttention
# with fused rotary and seqlens_k / total_sequence_length subgraphs,
# SkipSimplifiedLayerNormalization, MatMulNBits MLP.
# --------------------------------------------------------------------------
def _nbits(name, w, block=32, zero_points=False):
    """MatMulNBits initializers for a [K, N] weight: B uint8 [N, kb, bs/2],
    scales [N, kb] (and packed uint8 zero points)."""
    k, n = w.shape
    kb = (k + block - 1) // block
    wt = np.zeros((n, kb * block), np.float32)
    wt[:, :k] = w.T
    blocks = wt.reshape(n, kb, block)
    if zero_points:
        lo, hi = blocks.min(-1), blocks.max(-1)
        scale = np.maximum(hi - lo, 1e-6) / 15.0
        zp = np.clip(np.round(-lo / scale), 0, 15).astype(np.uint8)
    else:
        scale = np.maximum(np.abs(blocks).max(-1), 1e-6) / 7.0
        zp = np.full((n, kb), 8, np.uint8)
    q = np.clip(np.round(blocks / scale[..., None]) + zp[..., None], 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    out = [init(name + "_Q4", packed), init(name + "_scales", scale.astype(np.float32))]
    if zero_points:
        zpad = np.zeros((n, (kb + 1) // 2 * 2), np.uint8)
        zpad[:, :kb] = zp
        out.append(init(name + "_zero_points", (zpad[:, 0::2] | (zpad[:, 1::2] << 4)).astype(np.uint8)))
    return out


def genai_gqa_int4(outdir):
    r = rng()
    hidden, heads, kv_heads, head_dim, ffn = 64, 4, 2, 16, 128
    inits, nodes = [], []
    L = "/model/layers.0"

    def node(op, inputs, outputs, name, domain="", **attrs):
        nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))
        return outputs[0]

    def nbits(name, k, n, zp=False, inp=None, out=None):
        w = (r.standard_normal((k, n)) * 0.05).astype(np.float32)
        ts = _nbits(name, w, zero_points=zp)
        inits.extend(ts)
        ins = [inp, ts[0].name, ts[1].name] + ([ts[2].name] if zp else [])
        return node("MatMulNBits", ins, [out], name.replace(".", "/") + "/MatMul",
                    domain="com.microsoft", K=k, N=n, bits=4, block_size=32, accuracy_level=4)

    inits.append(init("model.layers.0.input_layernorm.weight",
                      (1 + 0.1 * r.standard_normal(hidden)).astype(np.float32)))
    inits.append(init("model.layers.0.post_attention_layernorm.weight",
                      (1 + 0.1 * r.standard_normal(hidden)).astype(np.float32)))
    inv = 1.0 / (10000 ** (np.arange(0, head_dim, 2) / head_dim))
    freqs = np.outer(np.arange(128), inv)
    inits.append(init("cos_cache", np.cos(freqs).astype(np.float32)))
    inits.append(init("sin_cache", np.sin(freqs).astype(np.float32)))
    inits.append(init("one", np.array(1, np.int64)))
    inits.append(init("one_1d", np.array([1], np.int64)))

    # seqlens_k = ReduceSum(attention_mask, 1) - 1; total = Shape(mask)[1].
    node("ReduceSum", ["attention_mask", "one_1d"], ["/model/attn_mask_reformat/ReduceSum_output_0"],
         "/model/attn_mask_reformat/attn_mask_subgraph/ReduceSum", keepdims=0)
    node("Sub", ["/model/attn_mask_reformat/ReduceSum_output_0", "one"],
         ["/model/attn_mask_reformat/Sub_output_0"], "/model/attn_mask_reformat/attn_mask_subgraph/Sub")
    node("Cast", ["/model/attn_mask_reformat/Sub_output_0"], ["seqlens_k"],
         "/model/attn_mask_reformat/attn_mask_subgraph/Sub/Cast", to=TensorProto.INT32)
    node("Shape", ["attention_mask"], ["/model/attn_mask_reformat/Shape_output_0"],
         "/model/attn_mask_reformat/attn_mask_subgraph/Shape")
    node("Gather", ["/model/attn_mask_reformat/Shape_output_0", "one"], ["total_len64"],
         "/model/attn_mask_reformat/attn_mask_subgraph/Gather", axis=0)
    node("Cast", ["total_len64"], ["total_seq_len"],
         "/model/attn_mask_reformat/attn_mask_subgraph/Gather/Cast", to=TensorProto.INT32)

    inits.append(init("model.embed_tokens.weight",
                      (r.standard_normal((256, hidden)) * 0.05).astype(np.float32)))
    node("Gather", ["model.embed_tokens.weight", "input_ids"], ["h0"], "/model/embed_tokens/Gather")
    node("SimplifiedLayerNormalization", ["h0", "model.layers.0.input_layernorm.weight"], ["x"],
         L + "/input_layernorm/LayerNorm", axis=-1, epsilon=1e-5, stash_type=1)
    nbits("model.layers.0.attn.qkv_proj", hidden, (heads + 2 * kv_heads) * head_dim,
          inp="x", out="qkv")
    node("GroupQueryAttention",
         ["qkv", "", "", "past_key_values.0.key", "past_key_values.0.value", "seqlens_k",
          "total_seq_len", "cos_cache", "sin_cache"],
         ["attn", "present.0.key", "present.0.value"], L + "/attn/GroupQueryAttention",
         domain="com.microsoft", num_heads=heads, kv_num_heads=kv_heads, do_rotary=1,
         rotary_interleaved=0, scale=1.0 / np.sqrt(head_dim), local_window_size=-1)
    nbits("model.layers.0.attn.o_proj", heads * head_dim, hidden, inp="attn", out="o")
    node("SkipSimplifiedLayerNormalization",
         ["h0", "o", "model.layers.0.post_attention_layernorm.weight"], ["x2", "", "", "h1"],
         L + "/post_attention_layernorm/SkipLayerNorm", domain="com.microsoft", epsilon=1e-5)
    nbits("model.layers.0.mlp.gate_proj", hidden, ffn, zp=True, inp="x2", out="gate")
    node("Sigmoid", ["gate"], ["gate_sig"], L + "/mlp/act_fn/Sigmoid")
    node("Mul", ["gate", "gate_sig"], ["gate_act"], L + "/mlp/act_fn/Mul")
    nbits("model.layers.0.mlp.up_proj", hidden, ffn, inp="x2", out="up")
    node("Mul", ["gate_act", "up"], ["mlp_h"], L + "/mlp/Mul")
    nbits("model.layers.0.mlp.down_proj", ffn, hidden, inp="mlp_h", out="down")
    node("Add", ["h1", "down"], ["hidden_states"], L + "/residual_add/Add")

    kv = ["batch_size", kv_heads, "past_sequence_length", head_dim]
    kvo = ["batch_size", kv_heads, "total_sequence_length", head_dim]
    inputs = [helper.make_tensor_value_info("input_ids", I64, ["batch_size", "sequence_length"]),
              helper.make_tensor_value_info("attention_mask", I64,
                                            ["batch_size", "total_sequence_length"]),
              helper.make_tensor_value_info("past_key_values.0.key", F, kv),
              helper.make_tensor_value_info("past_key_values.0.value", F, kv)]
    outputs = [helper.make_tensor_value_info("hidden_states", F,
                                             ["batch_size", "sequence_length", hidden]),
               helper.make_tensor_value_info("present.0.key", F, kvo),
               helper.make_tensor_value_info("present.0.value", F, kvo)]
    graph = helper.make_graph(nodes, "main_graph", inputs, outputs, inits)
    model = make_model(graph, opsets=(("", 21), ("com.microsoft", 1)), ir_version=10)
    save(model, outdir, external=True)


# --------------------------------------------------------------------------
# Opset-23 Attention (GQA, causal, with past), RMSNormalization,
# RotaryEmbedding, and block-wise int4 DequantizeLinear -> MatMul.
# --------------------------------------------------------------------------
def opset23_ops(outdir):
    r = rng()
    hidden, heads, kv_heads, head_dim = 32, 4, 2, 8
    inits = [
        init("norm.weight", (1 + 0.1 * r.standard_normal(hidden)).astype(np.float32)),
        init("cos_cache", np.cos(np.outer(np.arange(64), np.arange(head_dim // 2))).astype(np.float32)),
        init("sin_cache", np.sin(np.outer(np.arange(64), np.arange(head_dim // 2))).astype(np.float32)),
    ]
    q4 = r.integers(-8, 8, size=(hidden, heads * head_dim)).astype(np.int8)
    nib = (q4.flatten() & 0xF).astype(np.uint8)
    packed = helper.make_tensor("wq_q4", TensorProto.INT4, q4.shape,
                                vals=(nib[0::2] | (nib[1::2] << 4)).tobytes(), raw=True)
    inits.append(packed)
    inits.append(init("wq_scale", (r.random((hidden // 16, heads * head_dim)) * 0.01 + 0.001)
                      .astype(np.float32)))
    nodes = [
        helper.make_node("RMSNormalization", ["x", "norm.weight"], ["xn"], name="/norm",
                         axis=-1, epsilon=1e-6),
        helper.make_node("DequantizeLinear", ["wq_q4", "wq_scale"], ["wq"], name="/wq/DQ",
                         axis=0, block_size=16),
        helper.make_node("MatMul", ["xn", "wq"], ["q3"], name="/q_proj/MatMul"),
        helper.make_node("Reshape", ["q3", "qshape"], ["q4"], name="/q/Reshape"),
        helper.make_node("Transpose", ["q4"], ["q"], name="/q/Transpose", perm=[0, 2, 1, 3]),
        helper.make_node("RotaryEmbedding", ["q", "cos_cache", "sin_cache", "position_ids"],
                         ["qr"], name="/rope"),
        helper.make_node("Attention", ["qr", "k", "v", "", "past_key", "past_value"],
                         ["y", "present_key", "present_value"], name="/attn", is_causal=1),
    ]
    inits.append(init("qshape", np.array([0, 0, heads, head_dim], np.int64)))
    kvs = ["batch", kv_heads, "seq", head_dim]
    inputs = [helper.make_tensor_value_info("x", F, ["batch", "seq", hidden]),
              helper.make_tensor_value_info("position_ids", I64, ["batch", "seq"]),
              helper.make_tensor_value_info("k", F, kvs),
              helper.make_tensor_value_info("v", F, kvs),
              helper.make_tensor_value_info("past_key", F, ["batch", kv_heads, "past", head_dim]),
              helper.make_tensor_value_info("past_value", F, ["batch", kv_heads, "past", head_dim])]
    outputs = [helper.make_tensor_value_info("y", F, ["batch", heads, "seq", head_dim]),
               helper.make_tensor_value_info("present_key", F, ["batch", kv_heads, "total", head_dim]),
               helper.make_tensor_value_info("present_value", F,
                                             ["batch", kv_heads, "total", head_dim])]
    graph = helper.make_graph(nodes, "opset23", inputs, outputs, inits)
    save(make_model(graph, opsets=(("", 23),), ir_version=11), outdir)


# --------------------------------------------------------------------------
# Opset 24: a static KV cache updated in place by TensorScatter, read by
# Attention; names that are not past_key_values.* on purpose.
# --------------------------------------------------------------------------
def static_cache_opset24(outdir):
    heads, d, cap = 2, 8, 32
    nodes = [
        helper.make_node("TensorScatter", ["k_cache", "k", "write_pos"], ["k_cache_out"],
                         name="/layer0/k_scatter", axis=2),
        helper.make_node("TensorScatter", ["v_cache", "v", "write_pos"], ["v_cache_out"],
                         name="/layer0/v_scatter", axis=2, mode="linear"),
        helper.make_node("Attention", ["q", "k_cache_out", "v_cache_out", "mask"], ["y"],
                         name="/layer0/attn"),
    ]
    cache = ["batch", heads, cap, d]
    new = ["batch", heads, "seq", d]
    graph = helper.make_graph(
        nodes, "static_cache",
        [helper.make_tensor_value_info("q", F, new),
         helper.make_tensor_value_info("k", F, new),
         helper.make_tensor_value_info("v", F, new),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", 1, "seq", cap]),
         helper.make_tensor_value_info("write_pos", I64, ["batch"]),
         helper.make_tensor_value_info("k_cache", F, cache),
         helper.make_tensor_value_info("v_cache", F, cache)],
        [helper.make_tensor_value_info("y", F, new),
         helper.make_tensor_value_info("k_cache_out", F, cache),
         helper.make_tensor_value_info("v_cache_out", F, cache)])
    save(make_model(graph, opsets=(("", 24),), ir_version=11), outdir)


# --------------------------------------------------------------------------
# QDQ: QuantizeLinear -> DequantizeLinear on activations (per tensor, uint8
# with zero point) and a per-channel int8 weight.
# --------------------------------------------------------------------------
def qdq(outdir):
    r = rng()
    w = r.integers(-127, 128, size=(16, 24)).astype(np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="/q"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zp"], ["xd"], name="/dq"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"], name="/w/dq", axis=1),
        helper.make_node("MatMul", ["xd", "w"], ["y"], name="/matmul"),
    ]
    inits = [init("x_scale", np.array(0.05, np.float32)), init("x_zp", np.array(128, np.uint8)),
             init("w_q", w), init("w_scale", (r.random(24) * 0.01 + 0.001).astype(np.float32))]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", F, [4, 16])],
        [helper.make_tensor_value_info("y", F, [4, 24])], inits)
    save(make_model(graph, opsets=(("", 21),), ir_version=10), outdir)


# --------------------------------------------------------------------------
# com.microsoft MultiHeadAttention with packed bias, additive attention_bias
# and past/present, as the builder emits it for non-GQA execution providers.
# --------------------------------------------------------------------------
def genai_mha(outdir):
    r = rng()
    heads, d = 2, 8
    hidden = heads * d
    nodes = [helper.make_node(
        "MultiHeadAttention",
        ["q", "k", "v", "bias", "", "attention_bias", "past_key", "past_value"],
        ["y", "present_key", "present_value"], name="/model/layers.0/attn/MultiHeadAttention",
        domain="com.microsoft", num_heads=heads, unidirectional=1, scale=0.3)]
    inits = [init("bias", (r.standard_normal(3 * hidden) * 0.1).astype(np.float32))]
    bsh = ["batch", "seq", hidden]
    past = ["batch", heads, "past", d]
    graph = helper.make_graph(
        nodes, "mha",
        [helper.make_tensor_value_info(n, F, bsh) for n in ("q", "k", "v")] +
        [helper.make_tensor_value_info("attention_bias", F, ["batch", 1, "seq", "total"]),
         helper.make_tensor_value_info("past_key", F, past),
         helper.make_tensor_value_info("past_value", F, past)],
        [helper.make_tensor_value_info("y", F, bsh),
         helper.make_tensor_value_info("present_key", F, ["batch", heads, "total", d]),
         helper.make_tensor_value_info("present_value", F, ["batch", heads, "total", d])], inits)
    save(make_model(graph, opsets=(("", 21), ("com.microsoft", 1)), ir_version=10), outdir)


# --------------------------------------------------------------------------
# Mask plumbing older exporters emit: position ids from the attention mask
# (CumSum - 1) and a causal mask from Trilu over a constant of ones.
# --------------------------------------------------------------------------
def mask_ops(outdir):
    nodes = [
        helper.make_node("CumSum", ["attention_mask", "axis1"], ["csum"], name="/pos/CumSum"),
        helper.make_node("Sub", ["csum", "one"], ["position_ids"], name="/pos/Sub"),
        helper.make_node("Trilu", ["ones", "k1"], ["upper"], name="/mask/Trilu", upper=1),
    ]
    inits = [init("axis1", np.array(1, np.int64)), init("one", np.array(1, np.int64)),
             init("k1", np.array(1, np.int64)), init("ones", np.ones((8, 8), np.float32))]
    graph = helper.make_graph(
        nodes, "masks",
        [helper.make_tensor_value_info("attention_mask", I64, ["batch", "total"])],
        [helper.make_tensor_value_info("position_ids", I64, ["batch", "total"]),
         helper.make_tensor_value_info("upper", F, [8, 8])], inits)
    save(make_model(graph, opsets=(("", 17),)), outdir)


# --------------------------------------------------------------------------
# Shape computations that fold at import, and Gemm/Split/ConstantOfShape.
# --------------------------------------------------------------------------
def shape_ops(outdir):
    r = rng()
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Slice", ["s", "zero", "two"], ["s01"], name="slice_shape"),
        helper.make_node("Concat", ["s01", "four", "eight"], ["target"], name="concat_shape",
                         axis=0),
        helper.make_node("Reshape", ["x", "target"], ["r"], name="reshape"),
        helper.make_node("Split", ["r", "splits"], ["a", "b"], name="split", axis=3),
        helper.make_node("Flatten", ["w2"], ["wf"], name="flatten", axis=1),
        helper.make_node("Gemm", ["wf", "w", "c"], ["g"], name="gemm", transB=1),
        helper.make_node("ConstantOfShape", ["s"], ["zeros"], name="zeros",
                         value=numpy_helper.from_array(np.array([0.5], np.float32))),
        helper.make_node("Range", ["zero_s", "five_s", "one_s"], ["rng"], name="range"),
    ]
    inits = [
        init("zero", np.array([0], np.int64)), init("two", np.array([2], np.int64)),
        init("four", np.array([4], np.int64)), init("eight", np.array([8], np.int64)),
        init("splits", np.array([3, 5], np.int64)),
        init("w", (r.standard_normal((16, 12)) * 0.1).astype(np.float32)),
        init("c", r.standard_normal(16).astype(np.float32)),
        init("zero_s", np.array(0, np.int64)), init("five_s", np.array(5, np.int64)),
        init("one_s", np.array(1, np.int64)),
    ]
    graph = helper.make_graph(
        nodes, "shapes",
        [helper.make_tensor_value_info("x", F, ["batch", "seq", 32]),
         helper.make_tensor_value_info("w2", F, [2, 3, 4])],
        [helper.make_tensor_value_info("a", F, ["batch", "seq", 4, 3]),
         helper.make_tensor_value_info("b", F, ["batch", "seq", 4, 5]),
         helper.make_tensor_value_info("g", F, [2, 16]),
         helper.make_tensor_value_info("zeros", F, ["batch", "seq", 32]),
         helper.make_tensor_value_info("rng", I64, [5])], inits)
    save(make_model(graph, opsets=(("", 18),)), outdir)


# --------------------------------------------------------------------------
# Bad input: one model per diagnostic.
# --------------------------------------------------------------------------
def _single(op, domain="", opsets=(("", 17),), attrs=None, ir_version=8, inputs=("x",),
            out_shape=("n", 4), name="the_node", extra_inits=()):
    node = helper.make_node(op, list(inputs), ["y"], name=name, domain=domain, **(attrs or {}))
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", F, ["n", 4])],
        [helper.make_tensor_value_info("y", F, list(out_shape))], list(extra_inits))
    return make_model(graph, opsets=opsets, ir_version=ir_version)


def bad_unsupported_op(outdir):
    save(_single("Celu", attrs={"alpha": 1.0}, name="/model/act/Celu"), outdir)


def bad_unknown_domain(outdir):
    save(_single("Frobnicate", domain="com.example",
                 opsets=(("", 17), ("com.example", 1)), name="frob"), outdir)


def bad_missing_domain_opset(outdir):
    save(_single("SkipSimplifiedLayerNormalization", domain="com.microsoft", name="skipnorm"),
         outdir)


def bad_old_opset(outdir):
    save(_single("Relu", opsets=(("", 6),)), outdir)


def bad_attribute(outdir):
    save(_single("Softmax", attrs={"axis": -1, "frobnicate": 3}, name="softmax_node"), outdir)


def bad_undefined_input(outdir):
    save(_single("Add", inputs=("x", "nowhere"), name="add_node"), outdir)


def _weight_model(tensor):
    node = helper.make_node("MatMul", ["x", tensor.name], ["y"], name="mm")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", F, ["n", 64])],
        [helper.make_tensor_value_info("y", F, ["n", 64])], [tensor])
    return make_model(graph)


def _external(tensor, location, offset, length):
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = k, v
    tensor.ClearField("raw_data")
    return tensor


def external_over_4gib(outdir):
    """A weight 5 GiB into a sparse data file: offsets must be 64-bit."""
    os.makedirs(outdir, exist_ok=True)
    offset = 5 << 30
    data = (np.arange(64 * 64, dtype=np.float32) / 7.0).reshape(64, 64)
    with open(os.path.join(outdir, "big.data"), "wb") as f:
        f.truncate(offset + data.nbytes)
        f.seek(offset)
        f.write(data.tobytes())
    t = init("w", data)
    save(_weight_model(_external(t, "big.data", offset, data.nbytes)), outdir)


def bad_missing_external(outdir):
    t = init("w", np.ones((64, 64), np.float32))
    save(_weight_model(_external(t, "weights.bin", 0, 64 * 64 * 4)), outdir)


def bad_external_range(outdir):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "weights.bin"), "wb") as f:
        f.write(np.ones((64, 64), np.float32).tobytes())
    t = init("w", np.ones((64, 64), np.float32))
    save(_weight_model(_external(t, "weights.bin", 4096, 64 * 64 * 4)), outdir)


def bad_external_length(outdir):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "weights.bin"), "wb") as f:
        f.write(np.ones((64, 64), np.float32).tobytes())
    t = init("w", np.ones((64, 64), np.float32))
    save(_weight_model(_external(t, "weights.bin", 0, 100)), outdir)


def bad_external_escape(outdir):
    t = init("w", np.ones((64, 64), np.float32))
    save(_weight_model(_external(t, "../secrets/weights.bin", 0, 64 * 64 * 4)), outdir)


def bad_truncated(outdir):
    os.makedirs(outdir, exist_ok=True)
    t = init("w", np.ones((64, 64), np.float32))
    data = _weight_model(t).SerializeToString()
    with open(os.path.join(outdir, "model.onnx"), "wb") as f:
        f.write(data[: len(data) // 2])


def bad_not_onnx(outdir):
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "model.onnx"), "wb") as f:
        f.write(b"this is not a protobuf \xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")


def _windowed_gqa(window, past=True, capacity="cap"):
    """GroupQueryAttention with sliding_window_cache = 1 (4 heads, 2 KV heads,
    head_dim 8, packed QKV)."""
    ins = [helper.make_tensor_value_info("qkv", F, ["b", "s", 64]),
           helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["b"]),
           helper.make_tensor_value_info("total_len", TensorProto.INT32, [])]
    names = ["qkv", "", "", "", "", "seqlens_k", "total_len"]
    if past:
        ins += [helper.make_tensor_value_info(n, F, ["b", 2, capacity, 8])
                for n in ("past_key_values.0.key", "past_key_values.0.value")]
        names[3:5] = ["past_key_values.0.key", "past_key_values.0.value"]
    node = helper.make_node("GroupQueryAttention", names,
                            ["y", "present.0.key", "present.0.value"],
                            name="/model/layers.0/attn/GroupQueryAttention", domain="com.microsoft",
                            num_heads=4, kv_num_heads=2, local_window_size=window,
                            sliding_window_cache=1)
    outs = [helper.make_tensor_value_info("y", F, ["b", "s", 32]),
            helper.make_tensor_value_info("present.0.key", F, ["b", 2, capacity, 8]),
            helper.make_tensor_value_info("present.0.value", F, ["b", 2, capacity, 8])]
    graph = helper.make_graph([node], "g", ins, outs)
    return make_model(graph, opsets=(("", 17), ("com.microsoft", 1)))


def bad_window_cache_no_window(outdir):
    save(_windowed_gqa(-1), outdir)


def bad_window_cache_no_past(outdir):
    save(_windowed_gqa(16, past=False), outdir)


def bad_window_cache_capacity(outdir):
    save(_windowed_gqa(16, capacity=8), outdir)


def bad_dtype(outdir):
    node = helper.make_node("Identity", ["x"], ["y"], name="id")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, ["n"])])
    save(make_model(graph), outdir)


def bad_dynamic_slice(outdir):
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
             helper.make_node("Unsqueeze", ["n", "axes"], ["end"], name="unsqueeze"),
             helper.make_node("Slice", ["table", "start", "end"], ["y"], name="/rope/Slice")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, ["n", 4])],
        [helper.make_tensor_value_info("y", F, ["m", 8])],
        [init("zero", np.array(0, np.int64)), init("axes", np.array([0], np.int64)),
         init("start", np.array([0], np.int64)),
         init("table", np.ones((128, 8), np.float32))])
    save(make_model(graph), outdir)


MODELS = {
    "llama-torch-style": llama_torch_style,
    "genai-norms": genai_norms,
    "genai-gqa-int4": genai_gqa_int4,
    "opset23-ops": opset23_ops,
    "static-cache-opset24": static_cache_opset24,
    "qdq": qdq,
    "mask-ops": mask_ops,
    "genai-mha": genai_mha,
    "shape-ops": shape_ops,
    "bad-unsupported-op": bad_unsupported_op,
    "bad-unknown-domain": bad_unknown_domain,
    "bad-missing-domain-opset": bad_missing_domain_opset,
    "bad-old-opset": bad_old_opset,
    "bad-attribute": bad_attribute,
    "bad-undefined-input": bad_undefined_input,
    "external-over-4gib": external_over_4gib,
    "bad-missing-external": bad_missing_external,
    "bad-external-range": bad_external_range,
    "bad-external-length": bad_external_length,
    "bad-external-escape": bad_external_escape,
    "bad-truncated": bad_truncated,
    "bad-not-onnx": bad_not_onnx,
    "bad-dtype": bad_dtype,
    "bad-window-cache-no-window": bad_window_cache_no_window,
    "bad-window-cache-no-past": bad_window_cache_no_past,
    "bad-window-cache-capacity": bad_window_cache_capacity,
    "bad-dynamic-slice": bad_dynamic_slice,
}


def main(argv):
    if len(argv) == 2 and argv[1] == "--list":
        print("\n".join(MODELS))
        return 0
    if len(argv) != 3 or argv[1] not in MODELS:
        print(__doc__, file=sys.stderr)
        return 2
    MODELS[argv[1]](argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
