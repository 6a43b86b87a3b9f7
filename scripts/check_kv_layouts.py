#!/usr/bin/env python3
"""Checks every KV-cache layout and element type against the contiguous cache
of the model's own type, on the test models, and reports what quantized KV
costs.

For each model folder (test/Import/fixtures/<name>) and each variant
(kiln-compile --kv-layout / --kv-dtype, see VARIANTS):

1. Tensor mode: a prefill of a batch of 2 random 5-token prompts and
   DECODE_STEPS decode steps through `kiln-run --inputs`, every step fed the
   same inputs as the contiguous artifact (its presents become both sides'
   pasts, which a quantized cache quantizes on the way in).
2. Greedy generation: `kiln-run --json` on two prompts of different lengths
   in one batch, GREEDY_TOKENS tokens each.

Variant "prefix reuse" instead generates twice on one session for three
prompts sharing a 13-token prefix (paged:4), with and without the prefix
cache: equal tokens, fewer blocks at the peak, and prompt tokens reused.
Variant "preemption" generates for three prompts in a pool too small for
them all (--kv-blocks): sequences are preempted and recomputed, and the
tokens must equal those of an unbounded pool. Variant "ragged graph"
compiles with --ragged (kiln-ragged-batch) and must generate the tokens of
the graph as exported. Variant "serving" serves random requests through the
continuous-batching scheduler (kiln-run --serve) with arrivals between
steps, mixed prefill/decode steps and preemption, and each request must get
the tokens of the exported graph run on it alone; "serving int8" does the
same with an int8 cache, against the exported graph with that cache.

Paged caches of the model's type hold the same values, so their logits and
presents must be bit-identical and their tokens equal. Quantized caches are
held to per-scheme bounds (BOUNDS, on float32 models; logits are compared
relative to the largest logit magnitude of the step; the first layer's presents, which
depend on the inputs only, to the largest magnitude of each row's values) and report their greedy agreement:
the share of generated tokens before each sequence first differs from the
contiguous cache's, averaged over the sequences.

Prints one line per model and variant and `N passed, N failed`, or with
--table a Markdown table of the quantized variants' errors.
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

DECODE_STEPS = 3
GREEDY_TOKENS = 32
SEED = 20261202

# name -> kiln-compile options.
VARIANTS = {
    "paged:1": ["--kv-layout=paged:1"],
    "paged:16": ["--kv-layout=paged:16"],
    "int8": ["--kv-dtype=int8"],
    "int8 paged:16": ["--kv-dtype=int8", "--kv-layout=paged:16"],
    "fp8 paged:8": ["--kv-dtype=fp8", "--kv-layout=paged:8"],
    "int4 paged:32": ["--kv-dtype=int4", "--kv-layout=paged:32"],
    "int4 g8 paged:16": ["--kv-dtype=int4", "--kv-group=8", "--kv-layout=paged:16"],
}

# Prefix reuse on a paged cache (check_prefix_reuse).
PREFIX = "prefix reuse"
PREFIX_TOKENS = 12
VARIANTS[PREFIX] = ["--kv-layout=paged:4"]
# The ragged-batch form of the graph (check_ragged_graph).
RAGGED = "ragged graph"
VARIANTS[RAGGED] = ["--ragged", "--kv-layout=paged:4"]
# Preemption and recompute in a fixed pool (check_preemption).
PREEMPT = "preemption"
VARIANTS[PREEMPT] = ["--kv-layout=paged:4"]
# Continuous batching through the scheduler (check_serving).
SERVING = "serving"
VARIANTS[SERVING] = ["--ragged", "--kv-layout=paged:4"]
# The same with int8 KV, against the int8 cache run alone.
VARIANTS[SERVING + " int8"] = ["--ragged", "--kv-layout=paged:4", "--kv-dtype=int8"]
SERVE = {"requests": 6, "prompt": "3:14", "output": "4:12", "arrivals": 2, "step_tokens": 12,
         "blocks": 12}

# Quantized variants: (largest logit error / largest |logit|, largest present
# error / largest |value| of its row). The present bound is the storage's
# half step (qmax 127, 448 with 3 mantissa bits, 7) plus the f16 scale's
# rounding; the logit bounds are the largest errors the 28 test models show
# (int8 7.2e-3, fp8 3.3e-2, int4 1.8e-1) with headroom.
BOUNDS = {
    "int8": (2e-2, 0.5 / 127 + 2e-3),
    "fp8": (8e-2, 2 ** -4 + 2e-3),
    "int4": (3e-1, 0.5 / 7 + 2e-3),
}


def scheme(variant):
    return next((s for s in BOUNDS if variant.startswith(s)), None)


def kiln_json(tools, artifact, prompts, *flags, tokens=None):
    return generate(tools, artifact, prompts, tokens or PREFIX_TOKENS, *flags)


def compile_ragged(tools, model, artifact, options):
    """Compiles with --ragged: (None, problems) on success, or a summary
    when the model cannot run ragged batches (not applicable)."""
    r = subprocess.run([tools["kiln-compile"], model.path, "-o", artifact, "--quiet", *options],
                       capture_output=True, text=True)
    if r.returncode == 0:
        return None, []
    if "cannot run ragged batches" in r.stderr:
        why = r.stderr.split("cannot run ragged batches: ")[1].splitlines()[0]
        return f"not applicable: {why}", []
    return None, [f"kiln-compile {' '.join(options)} failed: {r.stderr.strip()}"]


def check_prefix_reuse(folder, tools, workdir):
    """Prompts sharing a prefix, generated twice on one session: with prefix
    reuse the tokens must equal those without, and the pool must hold fewer
    blocks at its peak while prompt tokens come from shared blocks."""
    model = Model(folder)
    try:
        artifact = os.path.join(workdir, "paged.kiln")
        compile_model(tools, model, artifact, ["--kv-layout=paged:4"])
        rng = np.random.default_rng(SEED + 1)
        shared = rng.integers(0, model.vocab, 13).tolist()
        prompts = [shared + rng.integers(0, model.vocab, 2).tolist() for _ in range(3)]
        want, plain = kiln_json(tools, artifact, prompts, "--repeat", "2", "--no-prefix-reuse")
        got, reuse = kiln_json(tools, artifact, prompts, "--repeat", "2")
        if not reuse["layout"] == "paged":
            return [], "not applicable: not every layer has a paged cache (windowed layers stay tensors)"
        problems = []
        if got != want:
            problems.append(f"tokens with prefix reuse {got} differ from without {want}")
        if reuse["reused_tokens"] <= 0:
            problems.append("no prompt token was reused")
        if reuse["blocks_peak"] >= plain["blocks_peak"]:
            problems.append(f"peak blocks {reuse['blocks_peak']} with reuse, "
                            f"{plain['blocks_peak']} without")
        summary = (f"3 prompts sharing 13 tokens, twice: equal tokens; peak {reuse['blocks_peak']} "
                   f"blocks vs {plain['blocks_peak']}, {reuse['reused_tokens']} prompt tokens "
                   f"reused, {reuse['blocks_cached']} cached")
        return problems, summary
    finally:
        model.close()


def check_preemption(folder, tools, workdir):
    """Three prompts of 6 tokens and 14 new tokens each need 15 blocks of 4;
    a pool of 9 holds fewer, so running sequences are preempted and
    recomputed: the tokens must equal those of an unbounded pool."""
    model = Model(folder)
    try:
        artifact = os.path.join(workdir, "paged.kiln")
        compile_model(tools, model, artifact, ["--kv-layout=paged:4"])
        rng = np.random.default_rng(SEED + 2)
        prompts = [rng.integers(0, model.vocab, 6).tolist() for _ in range(3)]
        want, free = kiln_json(tools, artifact, prompts, tokens=14)
        if free["layout"] != "paged":
            return [], "not applicable: not every layer has a paged cache (windowed layers stay tensors)"
        got, tight = kiln_json(tools, artifact, prompts, "--kv-blocks", "9", tokens=14)
        problems = []
        if got != want:
            problems.append(f"tokens with preemption {got} differ from {want}")
        if tight["preemptions"] < 1:
            problems.append("no sequence was preempted")
        if tight["blocks_peak"] > 9:
            problems.append(f"the pool of 9 blocks held {tight['blocks_peak']}")
        return problems, (f"pool of 9 blocks for 15 blocks' worth: {tight['preemptions']} "
                          f"preemptions, peak {tight['blocks_peak']} blocks, equal tokens")
    finally:
        model.close()


def check_ragged_graph(folder, tools, workdir):
    """The graph kiln-ragged-batch derives (ropes on position_ids, masks by
    attention kind) generates the tokens of the graph as exported."""
    model = Model(folder)
    try:
        base = os.path.join(workdir, "base.kiln")
        ragged = os.path.join(workdir, "ragged.kiln")
        compile_model(tools, model, base, [])
        skip, problems = compile_ragged(tools, model, ragged, VARIANTS[RAGGED])
        if skip or problems:
            return problems, skip or ""
        rng = np.random.default_rng(SEED + 3)
        prompts = [rng.integers(0, model.vocab, 9).tolist(), rng.integers(0, model.vocab, 4).tolist()]
        want, _ = kiln_json(tools, base, prompts, tokens=GREEDY_TOKENS)
        got, _ = kiln_json(tools, ragged, prompts, tokens=GREEDY_TOKENS)
        problems = [] if got == want else [f"ragged graph tokens {got} differ from {want}"]
        return problems, (f"greedy {GREEDY_TOKENS} tokens x {len(prompts)} prompts (lengths 9, 4) "
                          f"equal to the exported graph's")
    finally:
        model.close()


def check_serving(folder, variant, tools, workdir):
    """Requests of random lengths served by the continuous-batching scheduler
    (kiln-run --serve: two arrive per step, steps of at most 12 tokens mix
    prompt chunks and decode tokens, a pool of 12 blocks forces preemption)
    each get the tokens the exported graph generates for them alone (with a
    quantized cache: the graph as exported with the same cache)."""
    model = Model(folder)
    try:
        base = os.path.join(workdir, "base.kiln")
        ragged = os.path.join(workdir, "ragged.kiln")
        options = VARIANTS[variant]
        compile_model(tools, model, base, [o for o in options if o.startswith("--kv-dtype")])
        skip, problems = compile_ragged(tools, model, ragged, options)
        if skip or problems:
            return problems, skip or ""
        c = SERVE
        cmd = [tools["kiln-run"], ragged, "--json", "--seed", str(SEED),
               "--serve", str(c["requests"]), "--serve-prompt-len", c["prompt"],
               "--serve-output-len", c["output"], "--serve-arrivals", str(c["arrivals"]),
               "--max-step-tokens", str(c["step_tokens"]), "--kv-blocks", str(c["blocks"])]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return [f"kiln-run --serve failed: {r.stderr.strip()}"], ""
        out = json.loads(r.stdout)
        problems = []
        for i, req in enumerate(out["requests"]):
            alone, _ = kiln_json(tools, base, [req["prompt_ids"]], tokens=req["max_new_tokens"])
            if req["generated_ids"] != alone[0]:
                problems.append(f"request {i} (prompt of {len(req['prompt_ids'])}, "
                                f"{req['preemptions']} preemptions): {req['generated_ids']} "
                                f"served, {alone[0]} alone")
        kv = out["kv"]
        if kv["preemptions"] < 1:
            problems.append("no request was preempted")
        if kv["blocks_peak"] > c["blocks"]:
            problems.append(f"the pool of {c['blocks']} blocks held {kv['blocks_peak']}")
        if out["mixed_steps"] < 1:
            problems.append("no step mixed prompt chunks with decode tokens")
        return problems, (f"{c['requests']} requests ({c['arrivals']} arriving per step, steps of "
                          f"<= {c['step_tokens']} tokens, {out['mixed_steps']} of {out['steps']} "
                          f"mixing prefill and decode, {kv['preemptions']} preemptions in "
                          f"{c['blocks']} blocks): each request's tokens equal to it run alone")
    finally:
        model.close()


def check_variant(folder, variant, tools, workdir, results):
    if variant.startswith(SERVING):
        return check_serving(folder, variant, tools, workdir)
    if variant == RAGGED:
        return check_ragged_graph(folder, tools, workdir)
    if variant == PREFIX:
        return check_prefix_reuse(folder, tools, workdir)
    if variant == PREEMPT:
        return check_preemption(folder, tools, workdir)
    model = Model(folder)
    try:
        base = os.path.join(workdir, "base.kiln")
        other = os.path.join(workdir, "variant.kiln")
        compile_model(tools, model, base, [])
        compile_model(tools, model, other, VARIANTS[variant])
        quant = scheme(variant)
        rng = np.random.default_rng(SEED)
        problems = []
        logit_err = present_err = 0.0
        for step, got, want in paired_steps(tools, model, base, other, workdir, rng, 5,
                                            DECODE_STEPS):
            for name, g, w in zip(model.outputs, got, want):
                if g.shape != w.shape or g.dtype != w.dtype:
                    problems.append(f"step {step} {name}: {g.dtype}{list(g.shape)} vs "
                                    f"{w.dtype}{list(w.shape)}")
                    continue
                if not quant:
                    if not np.array_equal(g, w, equal_nan=True):
                        d = np.abs(g.astype(np.float64) - w)
                        problems.append(f"step {step} {name}: not bit-identical "
                                        f"({int((d > 0).sum())} values differ, max {d.max():.3g})")
                    continue
                if g.size == 0:
                    continue
                d = np.abs(g.astype(np.float64) - w)
                if name == "logits":
                    err = float(d.max() / max(np.abs(w).max(), 1e-30))
                    logit_err = max(logit_err, err)
                    if err > BOUNDS[quant][0]:
                        problems.append(f"step {step} logits: error {err:.3g} of the largest "
                                        f"logit > {BOUNDS[quant][0]}")
                elif name.startswith("present.0."):
                    # The first layer's new keys and values depend on the
                    # inputs only; later layers' carry the error of the
                    # attention before them, which the logits bound covers.
                    # Rows are the last axis: [batch, heads, tokens, dim].
                    scale = np.maximum(np.abs(w).max(axis=-1, keepdims=True), 1e-30)
                    err = float((d / scale).max())
                    present_err = max(present_err, err)
                    if err > BOUNDS[quant][1]:
                        problems.append(f"step {step} {name}: error {err:.3g} of the row's "
                                        f"largest value > {BOUNDS[quant][1]:.3g}")

        prompts = [rng.integers(0, model.vocab, 7).tolist(),
                   rng.integers(0, model.vocab, 3).tolist()]
        want, _ = generate(tools, base, prompts, GREEDY_TOKENS)
        got, _ = generate(tools, other, prompts, GREEDY_TOKENS)
        agree = agreement(got, want)
        if not quant and got != want:
            problems.append(f"greedy tokens differ: {got} vs {want}")
        if quant:
            results.append((os.path.basename(os.path.normpath(folder)), variant, logit_err,
                            present_err, agree))
            summary = (f"logits error {logit_err:.2e}, presents {present_err:.2e} (of the row's "
                       f"largest); greedy agreement {agree:.0%} over {GREEDY_TOKENS} tokens x "
                       f"{len(prompts)}")
        else:
            summary = (f"bit-identical logits and presents over prefill + {DECODE_STEPS} steps; "
                       f"greedy {GREEDY_TOKENS} tokens x {len(prompts)} equal")
        return problems, summary
    finally:
        model.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model folders (model.onnx + io.json)")
    ap.add_argument("--bin", required=True, help="folder holding kiln-compile and kiln-run")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="comma-separated variants (default: all)")
    ap.add_argument("--table", action="store_true",
                    help="also print a Markdown table of the quantized variants")
    args = ap.parse_args()
    tools = {t: os.path.join(args.bin, t) for t in ("kiln-compile", "kiln-run")}
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"unknown variant '{v}' (have: {', '.join(VARIANTS)})")
    results = []
    runs = [(f"{os.path.basename(os.path.normpath(f))} [{v}]", (f, v))
            for f in args.models for v in variants]
    status = run_all(runs, lambda f, v, workdir: check_variant(f, v, tools, workdir, results))
    if args.table and results:
        print("\n| model | KV | logit error | present error | greedy agreement |")
        print("|---|---|---|---|---|")
        for name, v, le, pe, ag in results:
            print(f"| {name} | {v} | {le:.2e} | {pe:.2e} | {ag:.0%} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
