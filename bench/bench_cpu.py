#!/usr/bin/env python3
"""Benchmark: kiln's CPU backend against onnxruntime on one model, one run.

Both generate the same number of greedy tokens (eos ignored) after the same
prompt, batch 1, with the same thread count; the script checks the tokens
agree and prints prefill time, decode tokens/s and the ratio kiln / ORT
(higher is better for kiln). This is a benchmark, not a test: nothing
asserts on time.

  bench/bench_cpu.py --model test/Import/fixtures/llama-genai-fp32 --bin build/bin
  bench/make_bench_model.py --int4 && \\
      bench/bench_cpu.py --model bench/models/llama-h1024-l8-int4 --bin build/bin --threads 1

How it measures:

- kiln: `kiln-run --json` in a fresh process per repeat; its prefill and
  decode times are taken inside the runtime around the forward steps
  (sampling and process start-up excluded). The artifact is mmapped, so the
  prefill of each process also maps the weights in on first touch (the file
  is in the page cache after the first repeat; on the default bench model
  that costs about 2 ms: a cold 1-token prefill against a warm decode step).
- onnxruntime: one InferenceSession (CPU EP, intra_op_num_threads =
  --threads), driven from Python one session.run per token with numpy
  inputs and outputs (past -> present copied by onnxruntime each step, as
  without onnxruntime-genai's shared buffer); each session.run is timed, the
  argmax is not. Repeats reuse the session, so only the first is cold.
- Repeats alternate kiln and onnxruntime so load on a shared machine hits
  both alike. The headline is the best repeat of each (lowest prefill,
  highest decode tokens/s, chosen separately); medians are printed too.
- int4 models: onnxruntime-genai writes MatMulNBits with accuracy_level 4
  (activations quantized to int8 per block, onnxruntime's fast path, not
  exact). onnxruntime is timed on the model as written, and also on the
  exact accuracy_level 0 copy that scripts/compare_ort.py uses as the
  reference; kiln's tokens are checked against the exact one.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import compare_ort  # noqa: E402  (shares the model and greedy-loop helpers)


def ort_greedy_timed(model, sess, prompt, n):
    ids = np.array([prompt], np.int64)
    past = model.empty_past(1)
    out, total, step_ms = [], len(prompt), []
    prefill_ms = 0.0
    logits_at = model.outputs.index("logits")
    for step in range(n):
        s = ids.shape[1]
        positions = np.arange(total - s, total, dtype=np.int64)[None, :]
        mask = np.ones((1, total), np.int64)
        feeds = model.feeds(ids, mask, positions, past)
        t = time.perf_counter()
        outs = sess.run(None, feeds)
        ms = (time.perf_counter() - t) * 1000
        if step == 0:
            prefill_ms = ms
        else:
            step_ms.append(ms)
        tok = int(np.argmax(outs[logits_at][0, -1]))
        out.append(tok)
        past = model.next_past(outs)
        ids = np.array([[tok]], np.int64)
        total += 1
    tps = len(step_ms) * 1000 / sum(step_ms) if step_ms else 0.0
    return {"tokens": out, "prefill_ms": prefill_ms, "decode_tps": tps,
            "step_ms_p50": statistics.median(step_ms) if step_ms else 0.0}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def summarize(runs):
    pre = [r["prefill_ms"] for r in runs]
    tps = [r["decode_tps"] for r in runs]
    return {"prefill_best": min(pre), "prefill_median": statistics.median(pre),
            "decode_best": max(tps), "decode_median": statistics.median(tps)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="folder with model.onnx and io.json")
    ap.add_argument("--bin", required=True, help="folder with kiln-compile and kiln-run")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=5, help="runs of each; best and median")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--compile-arg", action="append", default=[], metavar="ARG",
                    help="extra kiln-compile argument (repeatable), e.g. --compile-arg=--fuse=false "
                         "to time the graph as imported")
    args = ap.parse_args()
    if args.new_tokens < 2:
        ap.error("--new-tokens must be at least 2 (one prefill, then decode steps)")

    import onnxruntime as ort
    load_start = os.getloadavg()
    model = compare_ort.Model(args.model, threads=args.threads)  # exact reference
    sessions = {"exact": model.sess}
    if model.note:  # lossy MatMulNBits: also time the model as written
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = args.threads
        sessions = {"as written": ort.InferenceSession(model.path, opts,
                                                       providers=["CPUExecutionProvider"]),
                    "exact": model.sess}
    prompt = np.random.default_rng(0).integers(0, model.vocab, args.prompt_len).tolist()

    kiln_runs, ort_runs = [], {k: [] for k in sessions}
    with tempfile.TemporaryDirectory() as work:
        artifact = os.path.join(work, "model.kiln")
        subprocess.run([os.path.join(args.bin, "kiln-compile"), model.path, "-o", artifact,
                        "--quiet", *args.compile_arg], check=True)
        for _ in range(args.repeats):
            r = subprocess.run([os.path.join(args.bin, "kiln-run"), artifact, "--json",
                                "--ignore-eos", "--threads", str(args.threads),
                                "--max-new-tokens", str(args.new_tokens),
                                "--prompt-ids", ",".join(map(str, prompt))],
                               capture_output=True, text=True, check=True)
            res = json.loads(r.stdout)
            t = res["timing"]
            kiln_runs.append({"tokens": res["sequences"][0]["generated_ids"],
                              "prefill_ms": t["prefill_ms"],
                              "decode_tps": t["decode_tokens_per_second"],
                              "step_ms_p50": t["step_ms_p50"]})
            for name, sess in sessions.items():
                ort_runs[name].append(ort_greedy_timed(model, sess, prompt, args.new_tokens))
    load_end = os.getloadavg()

    ref = ort_runs["exact"][0]["tokens"]
    kiln_same = all(r["tokens"] == ref for r in kiln_runs)
    k = summarize(kiln_runs)
    print(f"model: {args.model} ({model.io.get('producer', '?')}), prompt {args.prompt_len}, "
          f"{args.new_tokens} new tokens, batch 1, {args.threads} threads, "
          f"{args.repeats} repeats")
    print(f"host: {cpu_name()}, {os.cpu_count()} cpus; onnxruntime {ort.__version__}; "
          f"load average {load_start[0]:.2f} before, {load_end[0]:.2f} after")
    print(f"tokens identical (kiln vs onnxruntime exact): {'yes' if kiln_same else 'NO'}")
    result = {"model": args.model, "producer": model.io.get("producer"),
              "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
              "threads": args.threads, "repeats": args.repeats, "cpu": cpu_name(),
              "cpus": os.cpu_count(), "onnxruntime": ort.__version__,
              "loadavg": [load_start[0], load_end[0]], "tokens_identical": kiln_same,
              "kiln": k, "onnxruntime_runs": {}}
    print(f"{'':28s}{'prefill ms best':>16s}{'(median)':>10s}{'decode tok/s best':>19s}"
          f"{'(median)':>10s}")
    print(f"{'kiln':28s}{k['prefill_best']:16.2f}{k['prefill_median']:10.2f}"
          f"{k['decode_best']:19.1f}{k['decode_median']:10.1f}")
    for name, runs in ort_runs.items():
        o = summarize(runs)
        label = "onnxruntime" if len(sessions) == 1 else f"onnxruntime ({name})"
        print(f"{label:28s}{o['prefill_best']:16.2f}{o['prefill_median']:10.2f}"
              f"{o['decode_best']:19.1f}{o['decode_median']:10.1f}")
        o["prefill_ratio_ort_over_kiln"] = o["prefill_best"] / k["prefill_best"]
        o["decode_ratio_kiln_over_ort"] = k["decode_best"] / o["decode_best"]
        if name != "exact":
            same = 0
            for a, b in zip(runs[0]["tokens"], ref):
                if a != b:
                    break
                same += 1
            o["tokens_match_exact"] = same
        result["onnxruntime_runs"][name] = o
    for name, o in result["onnxruntime_runs"].items():
        label = "onnxruntime" if len(sessions) == 1 else f"onnxruntime ({name})"
        print(f"ratio vs {label}: prefill (ort/kiln) {o['prefill_ratio_ort_over_kiln']:.2f}x, "
              f"decode (kiln/ort) {o['decode_ratio_kiln_over_ort']:.2f}x"
              + (f"; its first {o['tokens_match_exact']} of {args.new_tokens} tokens match the "
                 f"exact reference" if "tokens_match_exact" in o else ""))
    print("note: onnxruntime is driven from Python, one session.run per token (numpy in/out);"
          " kiln's time is measured inside the runtime (details: docs/PERF.md).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if kiln_same else 1


if __name__ == "__main__":
    sys.exit(main())
