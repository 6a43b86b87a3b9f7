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
    save(_single("Relu", opsets=(("", 9),)), outdir)


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
    "shape-ops": shape_ops,
    "bad-unsupported-op": bad_unsupported_op,
    "bad-unknown-domain": bad_unknown_domain,
    "bad-missing-domain-opset": bad_missing_domain_opset,
    "bad-old-opset": bad_old_opset,
    "bad-attribute": bad_attribute,
    "bad-undefined-input": bad_undefined_input,
    "bad-missing-external": bad_missing_external,
    "bad-external-range": bad_external_range,
    "bad-external-length": bad_external_length,
    "bad-external-escape": bad_external_escape,
    "bad-truncated": bad_truncated,
    "bad-not-onnx": bad_not_onnx,
    "bad-dtype": bad_dtype,
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
