#!/usr/bin/env python3
"""Checks weight quantization (kiln-compile --quant) against the float model
on the test models, and reports what each scheme costs.

For each model folder (test/Import/fixtures/<name>) and each scheme
(SCHEMES: kiln-compile options):

1. Tensor mode: a prefill of a batch of 2 random PROMPT-token prompts and
   DECODE_STEPS decode steps through `kiln-run --inputs`, both artifacts
   fed the same inputs (the float artifact's presents become both sides'
   pasts). Logit error: the largest |difference| over the largest |logit|
   of the step, held to the scheme's bound (BOUNDS).
2. Greedy generation: `kiln-run --json` on two prompts, GREEDY_TOKENS
   tokens each; agreement is the share of tokens before each sequence first
   differs from the float model's, averaged (reported, not bounded: random
   weights make the argmax fragile).
3. Weight bytes: the artifact's embedded weights before and after.

Prints one line per model and scheme and `N passed, N failed`, and with
--table a Markdown summary per scheme.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from check_runner import run_all
from compare_ort import Model
from kiln_tools import agreement, compile_model, generate, paired_steps

PROMPT = 6
DECODE_STEPS = 3
GREEDY_TOKENS = 32
SEED = 20261203

# name -> kiln-compile options. The fixtures' hidden sizes are 32 or 64, so
# groups of 16 exercise group-wise scales there (128 is the default).
SCHEMES = {
    "w8a16": ["--quant=w8a16"],
    "w4a16 g16": ["--quant=w4a16", "--quant-group=16"],
    "w4a16 g16 zp": ["--quant=w4a16", "--quant-group=16", "--quant-zero-points"],
    "w4a16 g16 lm_head excluded": ["--quant=w4a16", "--quant-group=16",
                                   "--quant-exclude=lm_head"],
    "fp8": ["--quant=fp8"],
    "fp8 calib": ["--quant=fp8", "--calib=random"],
    "fp8 per-tensor calib": ["--quant=fp8", "--quant-weight-scales=tensor", "--calib=random"],
    "w4a4": ["--quant=w4a4"],
    "w4a4 no rotation": ["--quant=w4a4", "--quant-rotation=none"],
}

# Largest logit error over the largest |logit| each scheme may show on the
# test models, with headroom over the worst they measure (w8a16 1.1e-2,
# w4a16 4.2e-1 on the Gemma2 fixtures: hidden 32, random weights, so every
# weight's int4 rounding error (up to 1/14 of its group's largest magnitude)
# reaches the logits through few, wide sums; fp8 1.6e-1 with per-tensor
# weight scales, 1.0e-1 per channel: E4M3 keeps 3 mantissa bits, a relative
# error up to 1/16 on every weight and every activation; w4a4 5.4e-1: int4
# activations with one scale per token, 15 levels for a whole row).
BOUNDS = {"w8a16": 2e-2, "w4a16": 5e-1, "fp8": 2.5e-1, "w4a4": 7.5e-1}


def weight_bytes(tools, model, options):
    """Bytes of the parameters the artifact stores (packed weights are built
    from their parts at load and not counted twice)."""
    r = subprocess.run([tools["kiln-compile"], model.path, "--emit=manifest", "-o", "-",
                        "--quiet", *options], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln-compile --emit=manifest failed: {r.stderr.strip()}")
    return sum(w["size"] for w in json.loads(r.stdout)["weights"]
               if w["kind"] == "parameter" and w["location"] != "packed")


def check_scheme(folder, scheme, tools, workdir, results):
    model = Model(folder)
    try:
        base = os.path.join(workdir, "base.kiln")
        quant = os.path.join(workdir, "quant.kiln")
        compile_model(tools, model, base, [])
        before = weight_bytes(tools, model, [])
        after = weight_bytes(tools, model, SCHEMES[scheme])
        if after == before:
            return [], ("not applicable: the model's projections are already quantized "
                        "(MatMulNBits, kept packed)")
        compile_model(tools, model, quant, SCHEMES[scheme])
        bound = BOUNDS[scheme.split()[0]]
        rng = np.random.default_rng(SEED)
        problems = []
        logit_err = 0.0
        for step, got, want in paired_steps(tools, model, base, quant, workdir, rng, PROMPT,
                                            DECODE_STEPS):
            i = model.outputs.index("logits")
            g, w = got[i], want[i]
            if g.shape != w.shape:
                problems.append(f"step {step} logits: {list(g.shape)} vs {list(w.shape)}")
                break
            err = float(np.abs(g.astype(np.float64) - w).max() / max(np.abs(w).max(), 1e-30))
            logit_err = max(logit_err, err)
            if not np.isfinite(err) or err > bound:
                problems.append(f"step {step} logits: error {err:.3g} of the largest logit "
                                f"> {bound}")
        prompts = [rng.integers(0, model.vocab, 7).tolist(),
                   rng.integers(0, model.vocab, 3).tolist()]
        agree = agreement(generate(tools, quant, prompts, GREEDY_TOKENS)[0],
                          generate(tools, base, prompts, GREEDY_TOKENS)[0])
        if after >= before:
            problems.append(f"weights {after} bytes quantized, {before} float")
        results.append((os.path.basename(os.path.normpath(folder)), scheme, logit_err, agree,
                        before, after))
        return problems, (f"logits error {logit_err:.2e} of the largest (bound {bound}); greedy "
                          f"agreement {agree:.0%} over {GREEDY_TOKENS} tokens x 2; weights "
                          f"{before} -> {after} bytes ({before / after:.2f}x smaller)")
    finally:
        model.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model folders (model.onnx + io.json)")
    ap.add_argument("--bin", required=True, help="folder holding kiln-compile and kiln-run")
    ap.add_argument("--schemes", default=",".join(SCHEMES),
                    help="comma-separated schemes (default: all)")
    ap.add_argument("--table", action="store_true", help="also print a Markdown table")
    args = ap.parse_args()
    tools = {t: os.path.join(args.bin, t) for t in ("kiln-compile", "kiln-run")}
    schemes = args.schemes.split(",")
    for s in schemes:
        if s not in SCHEMES:
            ap.error(f"unknown scheme '{s}' (have: {', '.join(SCHEMES)})")
    results = []
    runs = [(f"{os.path.basename(os.path.normpath(f))} [{s}]", (f, s))
            for f in args.models for s in schemes]
    status = run_all(runs, lambda f, s, workdir: check_scheme(f, s, tools, workdir, results))
    if args.table and results:
        print("\n| scheme | models | logit error (median) | logit error (worst) | "
              "greedy agreement (mean) | greedy agreement (worst) | weights (all models) |")
        print("|---|---|---|---|---|---|---|")
        for s in schemes:
            rows = [r for r in results if r[1] == s]
            if not rows:
                continue
            le = [r[2] for r in rows]
            ag = [r[3] for r in rows]
            before = sum(r[4] for r in rows)
            after = sum(r[5] for r in rows)
            print(f"| {s} | {len(rows)} | {np.median(le):.1e} | {max(le):.1e} | "
                  f"{np.mean(ag):.0%} | {min(ag):.0%} | {before / 1024:.0f} KiB -> "
                  f"{after / 1024:.0f} KiB ({before / after:.2f}x) |")
    return status


if __name__ == "__main__":
    sys.exit(main())
