#!/usr/bin/env python3
"""Equivalence of a compile pipeline: a model before and after it, on the CPU runtime.

For each model (.onnx, or kiln IR .mlir):

1. `kiln-compile MODEL --fuse=false` is the reference: the graph as
   imported, only canonicalized and CSE'd. `kiln-compile MODEL [ARGS]` is the
   pipeline under test (the default pipeline, or what --args selects, such as
   `--prune-weights=false`); for another pipeline altogether, give the model
   as kiln IR that `kiln-opt` has already transformed.
2. Fresh random inputs are made from the reference artifact's manifest, by
   role: token ids in [0, vocab), an all-ones attention mask, positions after
   a past of PAST tokens, past keys/values ~ N(0, 0.5^2) (a windowed cache
   gets its window as capacity), other inputs from their static shapes. The
   seed is printed; --seed picks another.
3. Both artifacts run one forward on the same inputs (`kiln-run --inputs`)
   and every output is compared: max |fused - ref| and max relative error
   |fused - ref| / (|ref| + 1e-6), reported per model.

Tolerance: f32 outputs must satisfy |fused - ref| <= ATOL + RTOL * |ref|
elementwise (ATOL = 1e-4, RTOL = 1e-3); f16/bf16 outputs use ATOL = RTOL =
2e-2. Fused kernels accumulate in another order (and norms always in f32),
so bitwise equality is not expected; a wrong rewrite is off by far more.

Prints one line per model and `N passed, N failed`; exits 1 on any failure.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

from check_runner import run_all

BATCH = 2
SEED = 20261202
TOLERANCE = {"f32": (1e-4, 1e-3), "f16": (2e-2, 2e-2), "bf16": (2e-2, 2e-2)}
NUMPY = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i64": np.int64,
         "i32": np.int32, "i8": np.int8, "u8": np.uint8, "i1": np.bool_}


def compile_model(tools, model, out, args):
    r = subprocess.run([tools["kiln-compile"], model, "-o", out, "--quiet", *args],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln-compile {' '.join(args)} failed: {r.stderr.strip()}")


def manifest_of(tools, model):
    r = subprocess.run([tools["kiln-compile"], model, "--emit=manifest", "--quiet",
                        "--fuse=false"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln-compile --emit=manifest failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def make_inputs(manifest, rng, SEQ, PAST):
    """One array per graph input, by role (see the module docstring)."""
    model = manifest.get("model", {})
    kv = model.get("kv_cache", {})
    named = {"batch_size": BATCH, "batch": BATCH, "sequence_length": SEQ,
             "past_sequence_length": PAST, "total_sequence_length": PAST + SEQ}
    arrays = []
    for io in manifest["inputs"]:
        dtype = NUMPY.get(io["dtype"])
        if dtype is None:
            raise RuntimeError(f"input '{io['name']}': dtype {io['dtype']} is not handled")
        role = io["role"]
        if role == "input_ids":
            arrays.append(rng.integers(0, model["vocab_size"], (BATCH, SEQ)).astype(dtype))
        elif role == "attention_mask":
            arrays.append(np.ones((BATCH, PAST + SEQ), dtype))
        elif role == "position_ids":
            arrays.append(np.tile(np.arange(PAST, PAST + SEQ), (BATCH, 1)).astype(dtype))
        elif role in ("past_key", "past_value"):
            d = kv["head_dim"] if role == "past_key" else kv["v_head_dim"]
            rows = io.get("window", PAST)
            arrays.append((0.5 * rng.standard_normal((BATCH, kv["kv_heads"], rows, d)))
                          .astype(dtype))
        else:
            shape = []
            for k, s in enumerate(io["shape"]):
                name = io.get("dims", [""] * len(io["shape"]))[k]
                if s < 0 and name not in named:
                    raise RuntimeError(f"input '{io['name']}': dimension {k} ('{name}') "
                                       "is dynamic and has no role")
                shape.append(s if s >= 0 else named[name])
            if np.issubdtype(dtype, np.floating):
                arrays.append(rng.standard_normal(shape).astype(dtype))
            else:
                arrays.append(rng.integers(0, 2, shape).astype(dtype))
    return arrays


def run(tools, artifact, inputs, outdir):
    os.makedirs(outdir, exist_ok=True)
    files = []
    for k, a in enumerate(inputs):
        path = os.path.join(outdir, f"input_{k}.pb")
        with open(path, "wb") as f:
            f.write(numpy_helper.from_array(a).SerializeToString())
        files.append(path)
    r = subprocess.run([tools["kiln-run"], artifact, "--inputs", *files, "--output-dir", outdir],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln-run failed: {r.stderr.strip()}")
    outs, k = [], 0
    while os.path.exists(os.path.join(outdir, f"output_{k}.pb")):
        t = onnx.TensorProto()
        with open(os.path.join(outdir, f"output_{k}.pb"), "rb") as f:
            t.ParseFromString(f.read())
        outs.append(numpy_helper.to_array(t))
        k += 1
    return outs


def check(tools, model, args, seed, workdir, seq, past):
    ref_art = os.path.join(workdir, "ref.kiln")
    new_art = os.path.join(workdir, "new.kiln")
    compile_model(tools, model, ref_art, ["--fuse=false"])
    compile_model(tools, model, new_art, args)
    manifest = manifest_of(tools, model)
    inputs = make_inputs(manifest, np.random.default_rng(seed), seq, past)
    ref = run(tools, ref_art, inputs, os.path.join(workdir, "ref"))
    new = run(tools, new_art, inputs, os.path.join(workdir, "new"))
    problems, worst_abs, worst_rel = [], 0.0, 0.0
    for io, r, n in zip(manifest["outputs"], ref, new):
        name = io["name"]
        if r.shape != n.shape or r.dtype != n.dtype:
            problems.append(f"{name}: {n.dtype}{list(n.shape)} vs reference "
                            f"{r.dtype}{list(r.shape)}")
            continue
        if r.size == 0 or not np.issubdtype(r.dtype, np.floating):
            if not np.array_equal(r, n):
                problems.append(f"{name}: integer outputs differ")
            continue
        atol, rtol = TOLERANCE.get(io["dtype"], TOLERANCE["f32"])
        rd, nd = r.astype(np.float64), n.astype(np.float64)
        diff = np.abs(nd - rd)
        worst_abs = max(worst_abs, float(diff.max()))
        worst_rel = max(worst_rel, float((diff / (np.abs(rd) + 1e-6)).max()))
        bad = diff > atol + rtol * np.abs(rd)
        if bad.any():
            i = np.unravel_index(np.argmax(diff), diff.shape)
            problems.append(f"{name}: {int(bad.sum())} of {r.size} values differ; worst at "
                            f"{tuple(int(x) for x in i)}: {nd[i]:.6g} vs reference {rd[i]:.6g}")
    return problems, f"max abs {worst_abs:.2e}, max rel {worst_rel:.2e} over {len(ref)} outputs"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model files (.onnx or .mlir) or folders "
                    "holding model.onnx")
    ap.add_argument("--bin", required=True, help="folder holding kiln-compile and kiln-run")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--seq", type=int, default=4, help="new tokens per sequence")
    ap.add_argument("--past", type=int, default=3, help="tokens already in the KV cache")
    ap.add_argument("--args", default="", help="kiln-compile arguments of the pipeline "
                    "under test (default: none, the default pipeline)")
    args = ap.parse_args()
    tools = {t: os.path.join(args.bin, t) for t in ("kiln-compile", "kiln-run")}
    print(f"seed {args.seed}; batch {BATCH}, {args.seq} new tokens after {args.past}")
    runs = []
    for model in args.models:
        if os.path.isdir(model):
            model = os.path.join(model, "model.onnx")
        name = os.path.basename(os.path.dirname(model)) if model.endswith("model.onnx") \
            else os.path.basename(model)
        runs.append((name, (model,)))
    return run_all(runs, lambda model, workdir: check(tools, model, args.args.split(),
                                                      args.seed, workdir, args.seq,
                                                      args.past))

if __name__ == "__main__":
    sys.exit(main())
