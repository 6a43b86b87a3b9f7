#!/usr/bin/env python3
"""Serving benchmark: the same synthetic requests served with a contiguous
KV cache (static batches), a paged one (static batches), and through the
continuous-batching scheduler with paged fp32 / int8 / fp8 / int4 caches.
Prints throughput, latency and KV memory per configuration, in one run.
This is a benchmark, not a test: nothing asserts on time (every
configuration's tokens are checked against the contiguous run's, since the
paged fp32 cache must give the same greedy tokens; quantized caches report
their agreement).

  python3 bench/make_bench_model.py --hidden 512 --layers 4 --heads 8 --kv-heads 2 \\
      --intermediate 1408 --vocab 8192 --context 1024
  python3 bench/serving.py --model bench/models/llama-h512-l4-fp32 --bin build/bin

How it measures:

- The requests come from `kiln-run --serve N --seed S --json` (random prompt
  and output lengths in the given ranges, eos ignored); every configuration
  serves exactly those prompts and output lengths.
- Static batches (`kiln-run --prompt-ids ... --max-new-tokens M`): requests
  in submission order, --batch at a time; each batch runs until its longest
  request is done (that is what static batching costs), and only each
  request's own tokens count. Time: the runtime's prefill + decode time of
  each batch (load excluded), summed. KV memory: the largest reservation of
  a batch (contiguous: every sequence's full capacity; paged: the pool's
  peak blocks).
- Continuous batching with a contiguous cache: every request reserves one
  region of the model's whole context (--context tokens), as servers
  without paging do; kiln runs it as a paged cache whose one block is the
  whole context (paged:<context>), so the scheduler is the same.
- Continuous batching (`kiln-run --serve`): arrivals per step as given
  (0: all at the start), step budget --max-step-tokens, at most --batch
  requests running. Time: from the first submit to the last token (load
  excluded). KV memory: the pool's peak blocks x bytes per block.
- Each configuration runs --repeats times in fresh processes, the
  configurations interleaved; the best (highest tokens/s) run is reported,
  with its latency percentiles. Ratios divide by the contiguous cache under
  continuous batching (the same scheduler); greedy agreement is against the
  contiguous static run's tokens (the share before the first difference).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile


# The row the ratios divide by: continuous batching with contiguous caches.
REFERENCE = 2


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr.strip()}")
    return r.stdout


def compile_model(bin_dir, model, out, options):
    run([os.path.join(bin_dir, "kiln-compile"), os.path.join(model, "model.onnx"), "-o", out,
         "--quiet", *options])


def serve(bin_dir, artifact, args):
    out = run([os.path.join(bin_dir, "kiln-run"), artifact, "--json", "--seed", str(args.seed),
               "--threads", str(args.threads), "--serve", str(args.requests),
               "--serve-prompt-len", args.prompt_len, "--serve-output-len", args.output_len,
               "--serve-arrivals", str(args.arrivals), "--max-step-tokens",
               str(args.max_step_tokens), "--max-running", str(args.batch)])
    return json.loads(out)


def static_batches(bin_dir, artifact, requests, args):
    total_ms = 0.0
    tokens = []
    kv_bytes = 0
    for i in range(0, len(requests), args.batch):
        batch = requests[i:i + args.batch]
        cmd = [os.path.join(bin_dir, "kiln-run"), artifact, "--json", "--ignore-eos",
               "--threads", str(args.threads),
               "--max-new-tokens", str(max(r["max_new_tokens"] for r in batch))]
        for r in batch:
            cmd += ["--prompt-ids", ",".join(map(str, r["prompt_ids"]))]
        out = json.loads(run(cmd))
        t = out["timing"]
        total_ms += t["prefill_ms"] + t["decode_ms"]
        for r, s in zip(batch, out["sequences"]):
            tokens.append(s["generated_ids"][:r["max_new_tokens"]])
        kv = out["kv"]
        kv_bytes = max(kv_bytes, kv["blocks_peak"] * kv["bytes_per_block"]
                       if kv["layout"] == "paged" else kv["bytes"])
    useful = sum(len(t) for t in tokens)
    return {"tokens": tokens, "ms": total_ms, "tok_s": useful * 1000.0 / total_ms,
            "kv_bytes": kv_bytes, "latency": None, "preemptions": 0}


def agreement(got, want):
    shares = []
    for g, w in zip(got, want):
        n = next((i for i, (a, b) in enumerate(zip(g, w)) if a != b), min(len(g), len(w)))
        shares.append(n / max(len(w), 1))
    return sum(shares) / len(shares)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="folder with model.onnx")
    ap.add_argument("--bin", required=True, help="folder holding kiln-compile and kiln-run")
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--prompt-len", default="16:128", help="MIN:MAX")
    ap.add_argument("--output-len", default="8:64", help="MIN:MAX")
    ap.add_argument("--arrivals", type=int, default=0, help="requests per step (0: all at once)")
    ap.add_argument("--batch", type=int, default=8,
                    help="static batch size, and the scheduler's max running requests")
    ap.add_argument("--max-step-tokens", type=int, default=256)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--context", type=int, default=1024,
                    help="the model's max sequence length: the contiguous region a request "
                         "reserves under continuous batching")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    bs = args.block_size
    configs = [
        ("contiguous f32, static batches", [], False),
        (f"paged:{bs} f32, static batches", [f"--kv-layout=paged:{bs}"], False),
        (f"contiguous f32 (one {args.context}-token region per request), continuous",
         ["--ragged", f"--kv-layout=paged:{args.context}"], True),
        (f"paged:{bs} f32, continuous", ["--ragged", f"--kv-layout=paged:{bs}"], True),
        (f"paged:{bs} int8, continuous",
         ["--ragged", f"--kv-layout=paged:{bs}", "--kv-dtype=int8"], True),
        (f"paged:{bs} fp8, continuous",
         ["--ragged", f"--kv-layout=paged:{bs}", "--kv-dtype=fp8"], True),
        (f"paged:{bs} int4, continuous",
         ["--ragged", f"--kv-layout=paged:{bs}", "--kv-dtype=int4"], True),
    ]
    with tempfile.TemporaryDirectory() as work:
        artifacts = []
        for i, (_, options, _) in enumerate(configs):
            path = os.path.join(work, f"{i}.kiln")
            compile_model(args.bin, args.model, path, options)
            artifacts.append(path)
        requests = serve(args.bin, artifacts[3], args)["requests"]
        prompt_tokens = sum(len(r["prompt_ids"]) for r in requests)
        out_tokens = sum(r["max_new_tokens"] for r in requests)
        best = [None] * len(configs)
        for _ in range(args.repeats):  # configurations interleaved: load hits all alike
            for i, ((name, _, continuous), artifact) in enumerate(zip(configs, artifacts)):
                if continuous:
                    o = serve(args.bin, artifact, args)
                    kv = o["kv"]
                    r = {"tokens": [q["generated_ids"] for q in o["requests"]],
                         "ms": o["total_ms"], "tok_s": o["tokens_per_second"],
                         "kv_bytes": kv["blocks_peak"] * kv["bytes_per_block"],
                         "latency": o["latency_ms"], "ttft": o["time_to_first_token_ms"],
                         "preemptions": kv["preemptions"]}
                else:
                    r = static_batches(args.bin, artifact, requests, args)
                if best[i] is None or r["tok_s"] > best[i]["tok_s"]:
                    best[i] = r
        results = [(name, r) for (name, _, _), r in zip(configs, best)]

    want = results[0][1]["tokens"]
    base = results[REFERENCE][1]
    print(f"model {os.path.normpath(args.model)}; {args.requests} requests, prompts "
          f"{args.prompt_len} ({prompt_tokens} tokens), outputs {args.output_len} "
          f"({out_tokens} tokens), arrivals {args.arrivals or 'all at once'}, batch "
          f"{args.batch}, step budget {args.max_step_tokens}, {args.threads} threads, "
          f"best of {args.repeats}; {platform.processor() or platform.machine()}")
    print()
    print("| configuration | tokens/s | tokens/s vs contiguous | time (ms) | "
          "latency p50 / p90 (ms) | first token p50 (ms) | KV peak (KiB) | KV vs contiguous | "
          "preemptions | greedy agreement |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results:
        lat = (f"{r['latency']['p50']:.0f} / {r['latency']['p90']:.0f}" if r["latency"]
               else "n/a (batch)")
        ttft = f"{r['ttft']['p50']:.0f}" if r.get("ttft") else "n/a"
        print(f"| {name} | {r['tok_s']:.1f} | {r['tok_s'] / base['tok_s']:.2f}x | {r['ms']:.0f} | "
              f"{lat} | {ttft} | {r['kv_bytes'] / 1024:.0f} | "
              f"{r['kv_bytes'] / base['kv_bytes']:.2f}x | {r['preemptions']} | "
              f"{agreement(r['tokens'], want):.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
