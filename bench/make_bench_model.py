#!/usr/bin/env python3
"""Writes a random-weight Llama-style decoder in onnxruntime-genai's layout.

The graph mirrors test/Import/fixtures/llama-genai-fp32/model.onnx (and, with
--int4, llama-genai-int4/model.onnx) node for node: the attention-mask
subgraph (ReduceSum/Sub/Cast, Shape/Gather/Cast), the embedding Gather,
SimplifiedLayerNormalization then SkipSimplifiedLayerNormalization between
blocks, a packed-QKV MatMul (or MatMulNBits) feeding com.microsoft
GroupQueryAttention with cos/sin caches and do_rotary=1, a SiLU-gated MLP
(Sigmoid, Mul, Mul) and the lm_head, with the fixtures' node, tensor, input
and output names. Only the sizes and the weights differ: the weights are
random (numpy, fixed seed), scaled so activations stay O(1) and the logits
have a spread of about 1 (linear layers ~ normal(0, 1/sqrt(fan_in))).

The output folder gets model.onnx, model.onnx.data (every initializer as
external data, so large models are fine), io.json (as the fixtures',
read by scripts/compare_ort.py and bench/bench_cpu.py) and
genai_config.json (eos, context length, vocabulary for kiln-compile).

  bench/make_bench_model.py                      # bench/models/llama-h1024-l8-fp32
  bench/make_bench_model.py --int4               # bench/models/llama-h1024-l8-int4
  bench/make_bench_model.py --hidden 2048 --layers 16 --out /tmp/big

bench/models/ is ignored by git. Each weight is drawn from its own
generator seeded with (seed, tensor name), so the int4 model of a size is
the blockwise quantization of the fp32 model of that size.
"""

import argparse
import json
import os
import platform
import sys
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper

ALIGN = 64  # offset alignment of each tensor in model.onnx.data
BIG_ALIGN = 65536  # tensors of 1 MiB or more start on a 64 KiB boundary
BLOCK = 32  # MatMulNBits block size (the genai builder's default)
ACCURACY_LEVEL = 4  # as the genai builder writes it for CPU int4


class DataWriter:
    """Appends tensors to model.onnx.data and returns external TensorProtos."""

    def __init__(self, folder, name="model.onnx.data"):
        self.name = name
        self.f = open(os.path.join(folder, name), "wb")
        self.offset = 0

    def add(self, name, array):
        array = np.ascontiguousarray(array)
        raw = array.tobytes()
        align = BIG_ALIGN if len(raw) >= (1 << 20) else ALIGN
        pad = -self.offset % align
        if pad:
            self.f.write(b"\0" * pad)
            self.offset += pad
        self.f.write(raw)
        t = TensorProto()
        t.name = name
        t.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        t.dims.extend(array.shape)
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.name), ("offset", str(self.offset)),
                     ("length", str(len(raw)))):
            e = t.external_data.add()
            e.key, e.value = k, v
        self.offset += len(raw)
        return t

    def close(self):
        self.f.close()


def rng_for(seed, name):
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def normal(seed, name, shape, std):
    a = rng_for(seed, name).standard_normal(shape, dtype=np.float32)
    a *= np.float32(std)
    return a


def norm_weight(seed, name, n):
    # Around 1 like a trained RMSNorm gain (the fixtures': 1 +- 0.1).
    return 1.0 + normal(seed, name, (n,), 0.1)


def quantize_q4(w_kn):
    """Symmetric blockwise int4 as onnxruntime's MatMulNBits quantizer writes
    it (no zero points: the implied zero point is 8). w_kn is the MatMul
    weight [K, N]; returns (packed uint8 [N, blocks, BLOCK/2], scales
    float32 [N, blocks])."""
    k, n = w_kn.shape
    blocks = (k + BLOCK - 1) // BLOCK
    w = np.zeros((n, blocks * BLOCK), np.float32)
    w[:, :k] = w_kn.T
    w = w.reshape(n, blocks, BLOCK)
    # The value of largest magnitude, with its sign, maps to -8.
    idx = np.abs(w).argmax(axis=2)[..., None]
    vmax = np.take_along_axis(w, idx, axis=2)[..., 0]
    scales = (vmax / -8.0).astype(np.float32)
    recip = np.divide(1.0, scales, out=np.zeros_like(scales), where=scales != 0)
    q = np.clip(np.floor(w * recip[..., None] + 8.5), 0, 15).astype(np.uint8)
    packed = q[..., 0::2] | (q[..., 1::2] << 4)  # low nibble first
    return np.ascontiguousarray(packed), scales


def rope_caches(context, head_dim, theta):
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = np.arange(context, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def build(args):
    H, L, NH, KV, D = args.hidden, args.layers, args.heads, args.kv_heads, args.head_dim
    I, V, C = args.intermediate, args.vocab, args.context
    if NH % KV:
        sys.exit(f"--heads {NH} must be a multiple of --kv-heads {KV}")
    if D % 2:
        sys.exit("--head-dim must be even (rotary)")
    qkv = (NH + 2 * KV) * D
    attn_out = NH * D
    eps = args.eps
    seed = args.seed
    os.makedirs(args.out, exist_ok=True)
    data = DataWriter(args.out)

    nodes, inits, vinfo = [], {}, []
    FLOAT, INT64, INT32 = TensorProto.FLOAT, TensorProto.INT64, TensorProto.INT32

    def vi(name, elem, shape):
        vinfo.append(helper.make_tensor_value_info(name, elem, shape))

    def linear_weight(prefix, k, n):
        """The [K, N] float weight of one linear layer (x @ W)."""
        return normal(seed, prefix + ".MatMul.weight", (k, n), 1.0 / np.sqrt(k))

    # -- initializers, in the fixtures' order --------------------------------
    def add_init(name, array):
        inits[name] = data.add(name, array)
        vi(name, inits[name].data_type, list(array.shape))

    def add_linear(prefix, k, n):
        w = linear_weight(prefix, k, n)
        if args.int4:
            packed, scales = quantize_q4(w)
            add_init(prefix + ".MatMul.weight_Q4", packed)
            add_init(prefix + ".MatMul.weight_scales", scales)
        else:
            add_init(prefix + ".MatMul.weight", w)

    cos, sin = rope_caches(C, D, args.rope_theta)
    # Embedding rows ~ normal(0, 1): the residual stream starts at RMS 1.
    add_init("model.embed_tokens.weight", normal(seed, "model.embed_tokens.weight", (V, H), 1.0))
    final_norm = f"model.layers.{L}.final_norm_layernorm.weight"
    if args.int4:
        # genai int4: float tensors first, then the quantized blobs.
        for layer in range(L):
            n = f"model.layers.{layer}.input_layernorm.weight"
            add_init(n, norm_weight(seed, n, H))
            if layer == 0:
                add_init("cos_cache", cos)
                add_init("sin_cache", sin)
            n = f"model.layers.{layer}.post_attention_layernorm.weight"
            add_init(n, norm_weight(seed, n, H))
        add_init(final_norm, norm_weight(seed, final_norm, H))
        for layer in range(L):
            p = f"model.layers.{layer}"
            add_linear(f"{p}.attn.qkv_proj", H, qkv)
            add_linear(f"{p}.attn.o_proj", attn_out, H)
            add_linear(f"{p}.mlp.gate_proj", H, I)
            add_linear(f"{p}.mlp.up_proj", H, I)
            add_linear(f"{p}.mlp.down_proj", I, H)
        add_linear("lm_head", H, V)
    else:
        for layer in range(L):
            p = f"model.layers.{layer}"
            add_init(f"{p}.input_layernorm.weight", norm_weight(seed, f"{p}.input_layernorm.weight", H))
            add_linear(f"{p}.attn.qkv_proj", H, qkv)
            if layer == 0:
                add_init("cos_cache", cos)
                add_init("sin_cache", sin)
            add_linear(f"{p}.attn.o_proj", attn_out, H)
            n = f"{p}.post_attention_layernorm.weight"
            add_init(n, norm_weight(seed, n, H))
            add_linear(f"{p}.mlp.gate_proj", H, I)
            add_linear(f"{p}.mlp.up_proj", H, I)
            add_linear(f"{p}.mlp.down_proj", I, H)
        add_init(final_norm, norm_weight(seed, final_norm, H))
        add_linear("lm_head", H, V)
    data.close()

    # -- nodes ----------------------------------------------------------------
    BS = ["batch_size", "sequence_length"]

    def node(op, name, inputs, outputs, domain="", **attrs):
        n = helper.make_node(op, inputs, outputs, name=name, domain=domain or None)
        # The builder's attribute order (make_node would sort them).
        n.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        nodes.append(n)
        return outputs[0]

    def matmul(prefix, path, x, k, n):
        """prefix: the weight prefix, path: the node path ('/model/layers.0/attn/qkv_proj')."""
        out = f"{path}/MatMul/output_0"
        if args.int4:
            node("MatMulNBits", f"{path}/MatMul_Q4",
                 [x, prefix + ".MatMul.weight_Q4", prefix + ".MatMul.weight_scales"], [out],
                 domain="com.microsoft", K=k, N=n, accuracy_level=ACCURACY_LEVEL, bits=4,
                 block_size=BLOCK)
        else:
            node("MatMul", f"{path}/MatMul", [x, prefix + ".MatMul.weight"], [out])
        return out

    one_1d, one = "/model/constants/INT64/[1]", "/model/constants/INT64/1"
    m = "/model/attn_mask_reformat/attn_mask_subgraph"
    node("Constant", "/model/constant_nodes/INT64/[1]", [], [one_1d],
         value=helper.make_tensor(one_1d, INT64, [1], np.array([1], np.int64).tobytes(), raw=True))
    vi(one_1d, INT64, [])
    node("ReduceSum", f"{m}/ReduceSum", ["attention_mask", one_1d], [f"{m}/ReduceSum/output_0"],
         keepdims=0)
    vi(f"{m}/ReduceSum/output_0", INT64, ["batch_size"])
    node("Sub", f"{m}/Sub", [f"{m}/ReduceSum/output_0", one_1d], [f"{m}/Sub/output_0"])
    vi(f"{m}/Sub/output_0", INT64, ["batch_size"])
    seqlens_k = node("Cast", f"{m}/Sub/Cast", [f"{m}/Sub/output_0"], [f"{m}/Sub/Cast/output_0"],
                     to=INT32)
    vi(seqlens_k, INT32, ["batch_size"])
    node("Shape", f"{m}/Shape", ["attention_mask"], [f"{m}/Shape/output_0"])
    vi(f"{m}/Shape/output_0", INT64, [2])
    node("Constant", "/model/constant_nodes/INT64/1", [], [one],
         value=helper.make_tensor(one, INT64, [], np.array(1, np.int64).tobytes(), raw=True))
    vi(one, INT64, [])
    node("Gather", f"{m}/Gather", [f"{m}/Shape/output_0", one], [f"{m}/Gather/output_0"], axis=0)
    vi(f"{m}/Gather/output_0", INT64, [])
    total_len = node("Cast", f"{m}/Gather/Cast", [f"{m}/Gather/output_0"],
                     [f"{m}/Gather/Cast/output_0"], to=INT32)
    vi(total_len, INT32, [])

    x = node("Gather", "/model/embed_tokens/Gather", ["model.embed_tokens.weight", "input_ids"],
             ["/model/embed_tokens/Gather/output_0"])
    vi(x, FLOAT, BS + [H])
    residual = x
    normed = node("SimplifiedLayerNormalization", "/model/layers.0/input_layernorm/LayerNorm",
                  [x, "model.layers.0.input_layernorm.weight"],
                  ["/model/layers.0/input_layernorm/output_0"], epsilon=eps, axis=-1, stash_type=1)
    vi(normed, FLOAT, BS + [H])

    def skip_norm(path, residual, delta, weight, last=False):
        outs = [f"{path}/output_0"] if last else [f"{path}/output_0", "", "", f"{path}/output_3"]
        node("SkipSimplifiedLayerNormalization", f"{path}/SkipLayerNorm",
             [residual, delta, weight], outs, domain="com.microsoft", epsilon=eps)
        vi(outs[0], FLOAT, BS + [H])
        if not last:
            vi(outs[3], FLOAT, BS + [H])
        return outs[0], outs[-1]

    for layer in range(L):
        p, w = f"/model/layers.{layer}", f"model.layers.{layer}"
        q = matmul(f"{w}.attn.qkv_proj", f"{p}/attn/qkv_proj", normed, H, qkv)
        vi(q, FLOAT, BS + [qkv])
        attn = node("GroupQueryAttention", f"{p}/attn/GroupQueryAttention",
                    [q, "", "", f"past_key_values.{layer}.key", f"past_key_values.{layer}.value",
                     seqlens_k, total_len, "cos_cache", "sin_cache", "", "", ""],
                    [f"{p}/attn/GroupQueryAttention/output_0", f"present.{layer}.key",
                     f"present.{layer}.value"],
                    domain="com.microsoft", num_heads=NH, kv_num_heads=KV,
                    scale=float(1.0 / np.sqrt(D)), local_window_size=-1, softcap=0.0,
                    do_rotary=1, rotary_interleaved=0)
        vi(attn, FLOAT, BS + [attn_out])
        o = matmul(f"{w}.attn.o_proj", f"{p}/attn/o_proj", attn, attn_out, H)
        vi(o, FLOAT, BS + [H])
        normed, residual = skip_norm(f"{p}/post_attention_layernorm", residual, o,
                                     f"{w}.post_attention_layernorm.weight")
        gate = matmul(f"{w}.mlp.gate_proj", f"{p}/mlp/gate_proj", normed, H, I)
        vi(gate, FLOAT, BS + [I])
        up = matmul(f"{w}.mlp.up_proj", f"{p}/mlp/up_proj", normed, H, I)
        vi(up, FLOAT, BS + [I])
        sig = node("Sigmoid", f"{p}/mlp/act_fn/Sigmoid", [gate], [f"{p}/mlp/act_fn/Sigmoid/output_0"])
        vi(sig, FLOAT, BS + [I])
        act = node("Mul", f"{p}/mlp/act_fn/Mul", [gate, sig], [f"{p}/mlp/act_fn/Mul/output_0"])
        vi(act, FLOAT, BS + [I])
        prod = node("Mul", f"{p}/mlp/Mul", [act, up], [f"{p}/mlp/Mul/output_0"])
        vi(prod, FLOAT, BS + [I])
        down = matmul(f"{w}.mlp.down_proj", f"{p}/mlp/down_proj", prod, I, H)
        vi(down, FLOAT, BS + [H])
        if layer + 1 < L:
            normed, residual = skip_norm(f"/model/layers.{layer + 1}/input_layernorm", residual,
                                         down, f"model.layers.{layer + 1}.input_layernorm.weight")
        else:
            normed, _ = skip_norm(f"/model/layers.{L}/final_norm_layernorm", residual, down,
                                  final_norm, last=True)
    if args.int4:
        node("MatMulNBits", "/lm_head/MatMul_Q4",
             [normed, "lm_head.MatMul.weight_Q4", "lm_head.MatMul.weight_scales"], ["logits"],
             domain="com.microsoft", K=H, N=V, accuracy_level=ACCURACY_LEVEL, bits=4,
             block_size=BLOCK)
    else:
        node("MatMul", "/lm_head/MatMul", [normed, "lm_head.MatMul.weight"], ["logits"])

    # -- graph inputs and outputs (the fixtures' order: keys, then values) ----
    kv_in = ["batch_size", KV, "past_sequence_length", "kv_cache_dim"]
    kv_out = ["batch_size", KV, "total_sequence_length", "kv_cache_dim"]
    inputs = [helper.make_tensor_value_info("input_ids", INT64, BS),
              helper.make_tensor_value_info("attention_mask", INT64,
                                            ["batch_size", "total_sequence_length"])]
    outputs = [helper.make_tensor_value_info("logits", FLOAT, BS + [V])]
    for kind in ("key", "value"):
        for layer in range(L):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{layer}.{kind}",
                                                        FLOAT, kv_in))
            outputs.append(helper.make_tensor_value_info(f"present.{layer}.{kind}", FLOAT,
                                                         kv_out))

    graph = helper.make_graph(nodes, "main_graph", inputs, outputs,
                              initializer=list(inits.values()), value_info=vinfo)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22),
                                                    helper.make_opsetid("com.microsoft", 1)],
                              producer_name="kiln-bench", producer_version="make_bench_model.py")
    model.ir_version = 10
    with open(os.path.join(args.out, "model.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    write_configs(args, inputs, outputs)
    return data.offset


def shape_of(vi):
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def write_configs(args, inputs, outputs):
    precision = "int4" if args.int4 else "fp32"
    hf = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 1, "dtype": "float32", "eos_token_id": 2,
        "head_dim": args.head_dim, "hidden_act": "silu", "hidden_size": args.hidden,
        "intermediate_size": args.intermediate, "max_position_embeddings": args.context,
        "mlp_bias": False, "model_type": "llama", "num_attention_heads": args.heads,
        "num_hidden_layers": args.layers, "num_key_value_heads": args.kv_heads,
        "pad_token_id": 0, "rms_norm_eps": args.eps,
        "rope_parameters": {"rope_theta": args.rope_theta, "rope_type": "default"},
        "tie_word_embeddings": False, "use_cache": True, "vocab_size": args.vocab,
    }
    dtype = {TensorProto.INT64: "int64", TensorProto.FLOAT: "float"}
    io = {
        "family": "llama",
        "producer": f"bench-{precision}",
        "how": " ".join(["bench/make_bench_model.py"] + sys.argv[1:]) +
               " (random weights in onnxruntime-genai's layout, no tokenizer)",
        "config": {
            "architecture": "LlamaForCausalLM", "size": "bench",
            "hidden_size": args.hidden, "num_hidden_layers": args.layers,
            "num_attention_heads": args.heads, "num_key_value_heads": args.kv_heads,
            "head_dim": args.head_dim, "intermediate_size": args.intermediate,
            "vocab_size": args.vocab, "max_position_embeddings": args.context,
            "tie_word_embeddings": False, "seed": args.seed, "attention_bias": False,
            "hidden_act": "silu", "rms_norm_eps": args.eps,
            "int4_block_size": BLOCK if args.int4 else None,
            "int4_accuracy_level": ACCURACY_LEVEL if args.int4 else None,
            "hf_config": hf,
        },
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "onnx": onnx.__version__},
        "graph": {
            "inputs": [{"name": i.name, "dtype": dtype[i.type.tensor_type.elem_type],
                        "shape": shape_of(i)} for i in inputs],
            "outputs": [{"name": o.name, "dtype": dtype[o.type.tensor_type.elem_type],
                         "shape": shape_of(o)} for o in outputs],
        },
    }
    if not args.int4:
        for k in ("int4_block_size", "int4_accuracy_level"):
            del io["config"][k]
    with open(os.path.join(args.out, "io.json"), "w") as f:
        json.dump(io, f, indent=1)
        f.write("\n")
    genai = {
        "model": {
            "bos_token_id": 1,
            "context_length": args.context,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "model.onnx",
                "head_size": args.head_dim,
                "hidden_size": args.hidden,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
                "num_attention_heads": args.heads,
                "num_hidden_layers": args.layers,
                "num_key_value_heads": args.kv_heads,
            },
            "eos_token_id": 2,
            "pad_token_id": 0,
            "type": "llama",
            "vocab_size": args.vocab,
        },
        "search": {
            "diversity_penalty": 0.0, "do_sample": False, "early_stopping": True,
            "length_penalty": 1.0, "max_length": args.context, "min_length": 0,
            "no_repeat_ngram_size": 0, "num_beams": 1, "num_return_sequences": 1,
            "past_present_share_buffer": True, "repetition_penalty": 1.0,
            "temperature": 1.0, "top_k": 50, "top_p": 1.0,
        },
    }
    with open(os.path.join(args.out, "genai_config.json"), "w") as f:
        json.dump(genai, f, indent=4)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="output folder (default bench/models/llama-h<hidden>-l<layers>-"
                                  "<fp32|int4>)")
    ap.add_argument("--int4", action="store_true",
                    help="MatMulNBits weights (4 bits, block 32, accuracy_level 4)")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=16, help="query heads")
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--context", type=int, default=2048,
                    help="rotary cache rows and genai_config context_length")
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--eps", type=float, default=1e-6, help="RMSNorm epsilon")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.out is None:
        args.out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models",
                                f"llama-h{args.hidden}-l{args.layers}-"
                                f"{'int4' if args.int4 else 'fp32'}")
    size = build(args)
    print(f"wrote {args.out}: model.onnx, model.onnx.data ({size / 2**20:.1f} MiB), io.json, "
          f"genai_config.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
