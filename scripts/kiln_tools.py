"""Helpers the check scripts share to drive kiln-compile and kiln-run.

tools is {"kiln-compile": path, "kiln-run": path}; model is a
compare_ort.Model.
"""
import json
import os
import subprocess

import numpy as np
import onnx
from onnx import numpy_helper

from compare_ort import run_kiln


def compile_model(tools, model, artifact, options):
    """kiln-compile model -o artifact options..., raising on failure."""
    r = subprocess.run([tools["kiln-compile"], model.path, "-o", artifact, "--quiet", *options],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln-compile {' '.join(options)} failed: {r.stderr.strip()}")


def generate(tools, artifact, prompts, tokens, *flags):
    """Greedy generation (eos ignored) of `tokens` per prompt in one batch:
    (each sequence's generated ids, the JSON's kv object)."""
    cmd = [tools["kiln-run"], artifact, "--json", "--ignore-eos", "--max-new-tokens",
           str(tokens), *flags]
    for p in prompts:
        cmd += ["--prompt-ids", ",".join(map(str, p))]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln-run {' '.join(flags)} failed: {r.stderr.strip()}")
    out = json.loads(r.stdout)
    return [s["generated_ids"] for s in out["sequences"]], out["kv"]


def agreement(got, want):
    """Share of tokens before the first difference, averaged over sequences."""
    shares = []
    for g, w in zip(got, want):
        n = next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
        shares.append(n / max(len(w), 1))
    return float(np.mean(shares))


def paired_steps(tools, model, base, other, workdir, rng, prompt, steps, batch=2):
    """A prefill of `batch` random `prompt`-token prompts and `steps` greedy
    decode steps through `kiln-run --inputs` on two artifacts fed the same
    inputs (the base artifact's presents become both sides' pasts). Yields
    (step, got, want): the other and the base artifact's outputs."""
    ids = rng.integers(0, model.vocab, (batch, prompt), dtype=np.int64)
    past = model.empty_past(batch)
    total = 0
    for step in range(1 + steps):
        s = ids.shape[1]
        positions = np.tile(np.arange(total, total + s, dtype=np.int64), (batch, 1))
        mask = np.ones((batch, total + s), np.int64)
        feeds = model.feeds(ids, mask, positions, past)
        want = run_kiln(tools["kiln-run"], base, model, feeds, workdir, f"{step}b")
        got = run_kiln(tools["kiln-run"], other, model, feeds, workdir, f"{step}v")
        yield step, got, want
        past = model.next_past(want)
        logits = want[model.outputs.index("logits")]
        ids = np.argmax(logits[:, -1], axis=-1).astype(np.int64)[:, None]
        total += s


def forward(kiln_bin, model_path, artifact, inputs, workdir, options=()):
    """Compiles an ONNX model and runs one forward on `inputs` ([(name,
    array)] in graph-input order): the outputs as arrays, or raises."""
    r = subprocess.run([os.path.join(kiln_bin, "kiln-compile"), model_path, "-o", artifact,
                        "--quiet", *options], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    out = os.path.join(workdir, "out")
    os.makedirs(out, exist_ok=True)
    files = []
    for i, (name, array) in enumerate(inputs):
        path = os.path.join(workdir, f"input_{i}.pb")
        with open(path, "wb") as f:
            f.write(numpy_helper.from_array(array, name).SerializeToString())
        files.append(path)
    r = subprocess.run([os.path.join(kiln_bin, "kiln-run"), artifact, "--inputs", *files,
                        "--output-dir", out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    outs = []
    for k in range(len(os.listdir(out))):
        outs.append(numpy_helper.to_array(onnx.load_tensor(os.path.join(out, f"output_{k}.pb"))))
    return outs
