#!/usr/bin/env python3
"""Checks kiln's CPU backend against onnxruntime on the test models.

For each model folder (test/Import/fixtures/<name>: model.onnx, io.json):

1. kiln-compile model.onnx -o <tmp>/model.kiln
2. Logits and KV: a prefill of a batch of 2 random 5-token prompts, then
   DECODE_STEPS decode steps; every step's inputs (ids, mask, positions and
   the previous step's onnxruntime presents as pasts) go to both onnxruntime
   and `kiln-run --inputs`, and every output must match within the tolerance
   below. Feeding both the same inputs keeps one step's error from
   compounding into the next.
3. Greedy generation: `kiln-run --prompt-ids A --prompt-ids B --json` (two
   prompts of different lengths in one batch) must give exactly the tokens of
   an onnxruntime greedy loop run on each prompt alone.

Windowed KV caches (GroupQueryAttention with sliding_window_cache = 1, as
the genai builder writes Gemma2's sliding layers): the past is a buffer of a
fixed capacity C = W + WINDOW_SLACK whose rows [0, L(T)) hold the most recent
positions (onnxruntime's contract; later rows are unspecified, so only the
resident rows are compared). The slack makes L sawtooth (G = C - W + 1 rows
reclaimed at a time); prompts of W + 6 tokens and 2W greedy tokens make both
the prefill and the decode steps evict.

Tolerances (float32 models): |kiln - ort| <= ATOL + RTOL * |ort| elementwise,
ATOL = 1e-4, RTOL = 1e-3. Both sides accumulate in float32 but in a different
order (blocked GEMM, fused attention), and int4 weights are dequantized on
the fly on both sides, so exact equality is not expected; 1e-4 is three
orders of magnitude below the logits' spread on these models.

int4 models: onnxruntime-genai writes MatMulNBits with accuracy_level 4,
which makes onnxruntime quantize the activations to int8 per block before the
product, a lossy shortcut (about 3e-3 relative here). The reference session
runs a copy of the model with accuracy_level 0 instead: the exact product of
the activations with the dequantized int4 weights, which is what kiln
computes. The weights and every other node are unchanged.

A model with windowed caches is checked twice: as written, and with
sliding_window_cache removed (a local window over growing caches, the form
older builders write), so the local-window mask is exercised both ways.

Prints one line per model and `N passed, N failed`; exits 1 on any failure.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from check_runner import run_all

ATOL = 1e-4
RTOL = 1e-3
DECODE_STEPS = 3
GREEDY_TOKENS = 10
SEED = 20261122
WINDOW_SLACK = 3


def ort_type(t):
    return {"tensor(float)": np.float32, "tensor(float16)": np.float16,
            "tensor(int64)": np.int64, "tensor(int32)": np.int32}[t]


def strip_window_cache(proto):
    """The model as it reads with growing caches: GroupQueryAttention keeps
    its local window but drops sliding_window_cache, and the windowed
    dimension names become the full-length ones. True if anything changed."""
    changed = False
    for n in proto.graph.node:
        if n.op_type == "GroupQueryAttention":
            for a in list(n.attribute):
                if a.name == "sliding_window_cache":
                    n.attribute.remove(a)
                    changed = True
    rename = {"past_sliding_length": "past_sequence_length",
              "total_sliding_length": "total_sequence_length"}
    for v in list(proto.graph.input) + list(proto.graph.output):
        for d in v.type.tensor_type.shape.dim:
            d.dim_param = rename.get(d.dim_param, d.dim_param)
    return changed


class Model:
    """A fixture and its onnxruntime session. `variant` "growing-window"
    checks a model with windowed caches as it would read without them (a
    local window over a growing cache, as older builders write it)."""

    def __init__(self, folder, threads=0, variant=None):
        self.folder = folder
        self.path = os.path.join(folder, "model.onnx")
        with open(os.path.join(folder, "io.json")) as f:
            self.io = json.load(f)
        cfg = self.io["config"]
        self.vocab = cfg["vocab_size"]
        self.kv_heads = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        self.note = ""
        self._temps = []
        proto = onnx.load(self.path, load_external_data=False)
        self.windows = {}  # local_window_size of each past input, when > 0
        for n in proto.graph.node:
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            if n.op_type == "GroupQueryAttention" and a.get("local_window_size", -1) > 0:
                for name in n.input[3:5]:
                    self.windows[name] = a["local_window_size"]
        if variant == "growing-window":
            if not strip_window_cache(proto):
                raise RuntimeError("the model has no windowed KV cache")
            self.path = self._copy(proto)  # kiln compiles the variant too
        source, reference_copy = self.path, None
        lossy = [a for n in proto.graph.node if n.op_type == "MatMulNBits"
                 for a in n.attribute if a.name == "accuracy_level" and a.i != 0]
        if lossy:
            for a in lossy:
                a.i = 0
            source = reference_copy = self._copy(proto)
            self.note = " (reference: MatMulNBits accuracy_level 0)"
        try:
            self.sess = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        finally:
            # The session has read its copy; only the variant kiln compiles
            # stays until close().
            if reference_copy:
                os.unlink(reference_copy)
                self._temps.remove(reference_copy)
        self.inputs = self.sess.get_inputs()
        self.outputs = [o.name for o in self.sess.get_outputs()]
        # Windowed caches: past input name -> local_window_size.
        self.window = {}
        for n in proto.graph.node:
            a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            if n.op_type == "GroupQueryAttention" and a.get("sliding_window_cache", 0):
                for name in n.input[3:5]:
                    self.window[name] = a["local_window_size"]

    def _copy(self, proto):
        # External data stays where it is: the copy sits next to the
        # original so relative locations still resolve.
        f = tempfile.NamedTemporaryFile(suffix=".onnx", dir=self.folder, delete=False)
        f.write(proto.SerializeToString())
        f.close()
        self._temps.append(f.name)
        return f.name

    def close(self):
        for t in self._temps:
            os.unlink(t)
        self._temps = []

    def resident(self, name, total):
        """Rows of output `name` that hold positions after `total` tokens."""
        w = self.window.get("past_key_values" + name[len("present"):])
        if w is None:
            return None
        cap = w + WINDOW_SLACK
        gap = cap - w + 1
        return total if total <= cap else total - gap * -(-(total - cap) // gap)

    def feeds(self, ids, mask, positions, past):
        """Graph inputs by role: past maps 'past_key_values.L.key' -> array."""
        feeds = {}
        for i in self.inputs:
            if i.name == "input_ids":
                feeds[i.name] = ids
            elif i.name == "attention_mask":
                feeds[i.name] = mask.astype(ort_type(i.type))
            elif i.name == "position_ids":
                feeds[i.name] = positions
            elif i.name in past:
                feeds[i.name] = past[i.name]
            else:
                raise RuntimeError(f"input {i.name} has no role in this comparison")
        return feeds

    def empty_past(self, batch):
        past = {}
        for i in self.inputs:
            if i.name.startswith("past_key_values"):
                rows = self.window[i.name] + WINDOW_SLACK if i.name in self.window else 0
                past[i.name] = np.zeros((batch, self.kv_heads, rows, self.head_dim),
                                        ort_type(i.type))
        return past

    def next_past(self, outs):
        past = {}
        for name, value in zip(self.outputs, outs):
            if name.startswith("present"):
                # present.L.key -> past_key_values.L.key
                past["past_key_values" + name[len("present"):]] = value
        return past


def run_kiln(kiln_run, artifact, model, feeds, workdir, step):
    d = os.path.join(workdir, f"step{step}")
    os.makedirs(d, exist_ok=True)
    files = []
    for k, i in enumerate(model.inputs):
        path = os.path.join(d, f"input_{k}.pb")
        with open(path, "wb") as f:
            f.write(numpy_helper.from_array(feeds[i.name], i.name).SerializeToString())
        files.append(path)
    r = subprocess.run([kiln_run, artifact, "--inputs", *files, "--output-dir", d],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln-run failed: {r.stderr.strip()}")
    outs = []
    for k in range(len(model.outputs)):
        t = onnx.TensorProto()
        with open(os.path.join(d, f"output_{k}.pb"), "rb") as f:
            t.ParseFromString(f.read())
        outs.append(numpy_helper.to_array(t))
    return outs


def compare(name, got, want):
    if got.shape != want.shape:
        return f"{name}: shape {got.shape} vs onnxruntime {want.shape}"
    if got.dtype != want.dtype:
        return f"{name}: dtype {got.dtype} vs onnxruntime {want.dtype}"
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    bad = np.abs(g - w) > ATOL + RTOL * np.abs(w)
    if bad.any():
        i = np.unravel_index(np.argmax(np.abs(g - w)), g.shape)
        return (f"{name}: {int(bad.sum())} of {g.size} values differ; worst at {i}: "
                f"kiln {g[i]:.6g} vs onnxruntime {w[i]:.6g}")
    return None


def ort_greedy(model, prompt, n):
    ids = np.array([prompt], np.int64)
    past = model.empty_past(1)
    out = []
    total = len(prompt)
    for step in range(n):
        s = ids.shape[1]
        positions = np.arange(total - s, total, dtype=np.int64)[None, :]
        mask = np.ones((1, total), np.int64)
        outs = model.sess.run(None, model.feeds(ids, mask, positions, past))
        logits = outs[model.outputs.index("logits")]
        tok = int(np.argmax(logits[0, -1]))
        out.append(tok)
        past = model.next_past(outs)
        ids = np.array([[tok]], np.int64)
        total += 1
    return out


def check_model(folder, tools, workdir, variant=None):
    model = Model(folder, variant=variant)
    try:
        return check_session(model, tools, workdir)
    finally:
        model.close()


def check_session(model, tools, workdir):
    artifact = os.path.join(workdir, "model.kiln")
    r = subprocess.run([tools["kiln-compile"], model.path, "-o", artifact, "--quiet"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return [f"kiln-compile failed: {r.stderr.strip()}"], ""
    rng = np.random.default_rng(SEED)
    # A local window (with or without a windowed cache) is only exercised by
    # sequences longer than it.
    windowed = max(model.windows.values(), default=0)
    cfg = model.io["config"]
    if "sliding_attention" in cfg.get("layer_types", []) and cfg.get("sliding_window"):
        windowed = max(windowed, cfg["sliding_window"])  # HF exports bake it into the mask
    batch, prompt_len = 2, (windowed + 6 if windowed else 5)
    greedy_tokens = 2 * windowed if windowed else GREEDY_TOKENS
    ids = rng.integers(0, model.vocab, (batch, prompt_len), dtype=np.int64)
    past = model.empty_past(batch)
    total = 0
    problems, worst = [], 0.0
    for step in range(1 + DECODE_STEPS):
        s = ids.shape[1]
        positions = np.tile(np.arange(total, total + s, dtype=np.int64), (batch, 1))
        mask = np.ones((batch, total + s), np.int64)
        feeds = model.feeds(ids, mask, positions, past)
        want = model.sess.run(None, feeds)
        got = run_kiln(tools["kiln-run"], artifact, model, feeds, workdir, step)
        for name, g, w in zip(model.outputs, got, want):
            rows = model.resident(name, total + s) if name.startswith("present") else None
            if rows is not None:
                if g.shape != w.shape:
                    problems.append(f"step {step} {name}: shape {g.shape} vs onnxruntime {w.shape}")
                    continue
                g, w = g[:, :, :rows], w[:, :, :rows]
            p = compare(f"step {step} {name}", g, w)
            if p:
                problems.append(p)
            elif g.size:
                worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - w))))
        logits = want[model.outputs.index("logits")]
        ids = np.argmax(logits[:, -1], axis=-1).astype(np.int64)[:, None]
        past = model.next_past(want)
        total += s

    prompts = [rng.integers(0, model.vocab, 6).tolist(), rng.integers(0, model.vocab, 3).tolist()]
    want = [ort_greedy(model, p, greedy_tokens) for p in prompts]
    cmd = [tools["kiln-run"], artifact, "--json", "--ignore-eos",
           "--max-new-tokens", str(greedy_tokens)]
    for p in prompts:
        cmd += ["--prompt-ids", ",".join(map(str, p))]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        problems.append(f"generation failed: {r.stderr.strip()}")
    else:
        got = [s["generated_ids"] for s in json.loads(r.stdout)["sequences"]]
        for k, (g, w) in enumerate(zip(got, want)):
            if g != w:
                problems.append(f"greedy sequence {k}: kiln {g} vs onnxruntime {w}")
    window_note = ""
    if model.window:
        window_note = f"windowed cache {windowed} (capacity {windowed + WINDOW_SLACK}), "
    elif windowed:
        window_note = f"local window {windowed}, "
    summary = (f"{model.note.strip()} prefill + {DECODE_STEPS} decode steps max |diff| {worst:.2e}; "
               f"{window_note}"
               f"prompt {prompt_len}; greedy {greedy_tokens} tokens x {len(prompts)} prompts (lengths "
               f"{len(prompts[0])}, {len(prompts[1])}, one batch)")
    return problems, summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model folders (model.onnx + io.json)")
    ap.add_argument("--bin", required=True, help="folder holding kiln-compile and kiln-run")
    args = ap.parse_args()
    tools = {t: os.path.join(args.bin, t) for t in ("kiln-compile", "kiln-run")}
    runs = []
    for folder in args.models:
        name = os.path.basename(os.path.normpath(folder))
        runs.append((name, (folder, None)))
        proto = onnx.load(os.path.join(folder, "model.onnx"), load_external_data=False)
        if strip_window_cache(proto):
            runs.append((name + " (growing cache)", (folder, "growing-window")))
    return run_all(runs, lambda folder, variant, workdir:
                   check_model(folder, tools, workdir, variant))

if __name__ == "__main__":
    sys.exit(main())
