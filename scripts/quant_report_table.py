#!/usr/bin/env python3
"""Runs `kiln-compile --quant=<scheme> --report` on test models and prints a
Markdown table of what the report measured (docs/quantization.md, "Report
on the test models"): the mean and worst per-layer relative error, the
logits' relative error and top-1 agreement (teacher-forced) and the greedy
agreement, on the default calibration prompts (8 random prompts of 32
tokens, 32 greedy tokens each).

  scripts/quant_report_table.py --bin build/bin test/Import/fixtures/llama-torchscript ...
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

SCHEMES = {
    "w8a16": ["--quant=w8a16"],
    "w4a16 g16": ["--quant=w4a16", "--quant-group=16"],
    "fp8 (dynamic per token)": ["--quant=fp8"],
    "fp8 (calibrated)": ["--quant=fp8", "--calib=random"],
    "w4a4 (Hadamard)": ["--quant=w4a4"],
    "w4a4 (no rotation)": ["--quant=w4a4", "--quant-rotation=none"],
}

LAYER = re.compile(r"^  \S.*\s(\d+\.\d+)$")
LOGITS = re.compile(r"relative (\d+\.\d+), top-1 agreement (\d+\.\d+)%")
GREEDY = re.compile(r"greedy, \d+ tokens per prompt: (\d+\.\d+)% of tokens")
BYTES = re.compile(r"Quantized weights \(.*\): \d+, (.*) -> (.*) \((.*)x smaller\)")


def report(kiln_compile, model, options, workdir):
    r = subprocess.run([kiln_compile, os.path.join(model, "model.onnx"), "-o",
                        os.path.join(workdir, "m.kiln"), "--quiet", "--report", *options],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    text = r.stderr.split("Quantized weights", 1)[1]
    text = "Quantized weights" + text
    layers = [float(m.group(1)) for line in text.splitlines() if (m := LAYER.match(line))]
    logits = LOGITS.search(text)
    greedy = GREEDY.search(text)
    size = BYTES.search(text)
    return layers, float(logits.group(1)), float(logits.group(2)), float(greedy.group(1)), size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--bin", required=True)
    args = ap.parse_args()
    kc = os.path.join(args.bin, "kiln-compile")
    print("| model | scheme | weights | layer error (mean) | layer error (worst) | "
          "logit error | top-1 | greedy |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as work:
        for model in args.models:
            name = os.path.basename(os.path.normpath(model))
            for scheme, options in SCHEMES.items():
                layers, rel, top1, greedy, size = report(kc, model, options, work)
                print(f"| {name} | {scheme} | {size.group(1)} -> {size.group(2)} "
                      f"({size.group(3)}x) | {sum(layers) / len(layers):.4f} | "
                      f"{max(layers):.4f} | {rel:.4f} | {top1:.1f}% | {greedy:.1f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
