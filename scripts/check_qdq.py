#!/usr/bin/env python3
"""Checks that pre-quantized QDQ weights stay quantized and match
onnxruntime.

Writes small ONNX models (fresh random weights and inputs, fixed seed) in
which a weight is stored quantized and dequantized by DequantizeLinear in
front of its MatMul or Gemm, as QDQ exporters write them: int8 per output
channel, int4 block-wise along K (opset 21), uint8 with zero points under a
Gemm with transB, and int4 block-wise through a Transpose. For each it
compiles with kiln-compile, checks that the artifact has no dequantize
launch (the matmul reads the stored values and decodes them in registers:
no dequantized copy of the weight), runs one forward through `kiln-run
--inputs`, and compares with onnxruntime with its graph optimizations off,
which computes the exact DequantizeLinear -> MatMul (relative to the largest
|output|, TOLERANCE: float32 accumulation order only).

Prints one line per model and `N passed, N failed`.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from check_runner import run_all
from kiln_tools import forward

SEED = 20261203
M, K, N = 4, 64, 48
TOLERANCE = 1e-5


def int4(name, values):
    """An INT4 initializer in raw_data: two values per byte, low nibble first."""
    flat = (values.flatten().astype(np.int16) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, 0)
    raw = (flat[0::2] | (flat[1::2] << 4)).tobytes()
    return helper.make_tensor(name, TensorProto.INT4, list(values.shape), raw, raw=True)


def models(rng):
    """name -> (nodes, initializers, opset)."""
    x = rng.standard_normal
    out = {}
    # int8, one scale per output channel (axis 1 of a [K, N] weight).
    q = rng.integers(-127, 128, (K, N)).astype(np.int8)
    s = (np.abs(x(N)) * 0.02 + 0.001).astype(np.float32)
    out["int8 per channel, MatMul"] = (
        [helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=1, name="dq"),
         helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(s, "ws")], 21)
    # int4 in blocks of 16 along K (axis 0), with zero points.
    q4 = rng.integers(-8, 8, (K, N)).astype(np.int8)
    s4 = (np.abs(x((K // 16, N))) * 0.1 + 0.01).astype(np.float32)
    z4 = rng.integers(-2, 3, (K // 16, N)).astype(np.int8)
    out["int4 block 16 with zero points, MatMul"] = (
        [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0, block_size=16,
                          name="dq"),
         helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [int4("wq", q4),
         numpy_helper.from_array(s4, "ws"),
         int4("wz", z4)], 21)
    # uint8 with zero points, output-major [N, K] under Gemm transB.
    qu = rng.integers(0, 256, (N, K)).astype(np.uint8)
    su = (np.abs(x(N)) * 0.02 + 0.001).astype(np.float32)
    zu = rng.integers(100, 156, (N,)).astype(np.uint8)
    bias = x(N).astype(np.float32)
    out["uint8 per channel with zero points, Gemm transB"] = (
        [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0, name="dq"),
         helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="gemm")],
        [numpy_helper.from_array(qu, "wq"), numpy_helper.from_array(su, "ws"),
         numpy_helper.from_array(zu, "wz"), numpy_helper.from_array(bias, "b")], 21)
    # int4 blocks of 32 along K of an output-major weight, then Transpose.
    qt = rng.integers(-8, 8, (N, K)).astype(np.int8)
    st = (np.abs(x((N, K // 32))) * 0.1 + 0.01).astype(np.float32)
    out["int4 block 32 output-major, Transpose + MatMul"] = (
        [helper.make_node("DequantizeLinear", ["wq", "ws"], ["wt"], axis=1, block_size=32,
                          name="dq"),
         helper.make_node("Transpose", ["wt"], ["w"], perm=[1, 0], name="t"),
         helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [int4("wq", qt),
         numpy_helper.from_array(st, "ws")], 21)
    return out


def check(name, nodes, inits, opset, xin, bin_dir, workdir):
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = os.path.join(workdir, "model.onnx")
    onnx.save(model, path)
    got = forward(bin_dir, path, os.path.join(workdir, "m.kiln"), [("x", xin)], workdir)[0]
    m = subprocess.run([os.path.join(bin_dir, "kiln-compile"), path, "--emit=manifest", "-o",
                        "-", "--quiet"], capture_output=True, text=True)
    ops = [l["op"] for l in json.loads(m.stdout)["launches"]]
    problems = []
    if "dequantize" in ops:
        problems.append(f"the artifact dequantizes the weight: launches {ops}")
    # Graph optimizations off: onnxruntime would otherwise fuse
    # DequantizeLinear -> MatMul into kernels that quantize the activations
    # too (0.5% off the exact product here).
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"]).run(
        None, {"x": xin})[0]
    err = float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())
    if err > TOLERANCE:
        problems.append(f"error {err:.3g} against onnxruntime > {TOLERANCE}")
    return problems, (f"no dequantized copy ({', '.join(ops)}); equal to onnxruntime "
                      f"within {err:.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="folder holding kiln-compile and kiln-run")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    runs = [(name, (name, *spec, rng.standard_normal((M, K)).astype(np.float32)))
            for name, spec in models(rng).items()]
    return run_all(runs, lambda name, nodes, inits, opset, xin, workdir:
                   check(name, nodes, inits, opset, xin, args.bin, workdir))


if __name__ == "__main__":
    sys.exit(main())
