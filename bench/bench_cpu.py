#!/usr/bin/env python3
"""Benchmark: kiln's CPU backend against onnxruntime on one model, one run.

Both generate the same number of greedy tokens (eos ignored) after the same
prompt, batch 1, with the same thread count; the script checks the tokens
agree and prints prefill time, decode tokens/s and the ratio kiln / ORT
(higher is better for kiln). This is a benchmark, not a test: nothing
asserts on time.

  bench/bench_cpu.py --model test/Import/fixtures/llama-genai-fp32 --bin build/bin
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import compare_ort  # noqa: E402  (shares the model and greedy-loop helpers)


def ort_greedy_timed(model, prompt, n):
    ids = np.array([prompt], np.int64)
    past = model.empty_past(1)
    out, total, step_ms = [], len(prompt), []
    prefill_ms = 0.0
    for step in range(n):
        s = ids.shape[1]
        positions = np.arange(total - s, total, dtype=np.int64)[None, :]
        mask = np.ones((1, total), np.int64)
        feeds = model.feeds(ids, mask, positions, past)
        t = time.perf_counter()
        outs = model.sess.run(None, feeds)
        ms = (time.perf_counter() - t) * 1000
        if step == 0:
            prefill_ms = ms
        else:
            step_ms.append(ms)
        tok = int(np.argmax(outs[model.outputs.index("logits")][0, -1]))
        out.append(tok)
        past = model.next_past(outs)
        ids = np.array([[tok]], np.int64)
        total += 1
    return out, prefill_ms, step_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="folder with model.onnx and io.json")
    ap.add_argument("--bin", required=True, help="folder with kiln-compile and kiln-run")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=5, help="best of N for both")
    args = ap.parse_args()

    import onnxruntime as ort
    model = compare_ort.Model(args.model, threads=args.threads)
    prompt = np.random.default_rng(0).integers(0, model.vocab, args.prompt_len).tolist()

    with tempfile.TemporaryDirectory() as work:
        artifact = os.path.join(work, "model.kiln")
        subprocess.run([os.path.join(args.bin, "kiln-compile"), model.path, "-o", artifact,
                        "--quiet"], check=True)
        best_kiln = None
        for _ in range(args.repeats):
            r = subprocess.run([os.path.join(args.bin, "kiln-run"), artifact, "--json",
                                "--ignore-eos", "--threads", str(args.threads),
                                "--max-new-tokens", str(args.new_tokens),
                                "--prompt-ids", ",".join(map(str, prompt))],
                               capture_output=True, text=True, check=True)
            res = json.loads(r.stdout)
            if best_kiln is None or res["timing"]["decode_tokens_per_second"] > \
                    best_kiln["timing"]["decode_tokens_per_second"]:
                best_kiln = res
    best_ort = None
    for _ in range(args.repeats):
        toks, prefill_ms, steps = ort_greedy_timed(model, prompt, args.new_tokens)
        tps = len(steps) * 1000 / sum(steps) if steps else 0
        if best_ort is None or tps > best_ort[2]:
            best_ort = (toks, prefill_ms, tps, steps)

    kt = best_kiln["timing"]
    same = best_kiln["sequences"][0]["generated_ids"] == best_ort[0]
    print(f"model: {args.model} ({model.io.get('producer', '?')}), prompt {args.prompt_len}, "
          f"{args.new_tokens} new tokens, batch 1, {args.threads} threads, best of {args.repeats}")
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
          f"onnxruntime {ort.__version__}")
    print(f"tokens identical: {'yes' if same else 'NO'}")
    print(f"prefill ms:         kiln {kt['prefill_ms']:.3f}   onnxruntime {best_ort[1]:.3f}   "
          f"ratio (ort/kiln) {best_ort[1] / kt['prefill_ms']:.2f}x")
    print(f"decode tokens/s:    kiln {kt['decode_tokens_per_second']:.1f}   onnxruntime "
          f"{best_ort[2]:.1f}   ratio (kiln/ort) {kt['decode_tokens_per_second'] / best_ort[2]:.2f}x")
    print("note: onnxruntime is driven from Python, one session.run per token (numpy in/out);"
          " kiln's time is measured inside the runtime.")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
