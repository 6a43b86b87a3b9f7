#!/usr/bin/env python3
"""Checks that kiln-compile --quant computes exactly what the scheme says.

Writes a small ONNX model (fresh random weights, fixed seed): y = x @ W1
(MatMul, W1 stored [K, N], so the compiler transposes it) and z = y @ W2^T
(Gemm with transB, W2 stored output-major [N, K]). For each scheme it
compiles the model, runs one forward through `kiln-run --inputs`, and
compares with numpy doing the same arithmetic in float64: each weight
quantized along K per output channel (w8a16: int8, scale max|w| / 127) or
per group (w4a16: int4, max|w| / 7; with zero points: ui4 over
[min(w, 0), max(w, 0)] / 15 and a rounded zero point), rounding half to
even and saturating, then dequantized and multiplied; fp8 also quantizes
each matmul's input (E4M3, scale max|x| / 448 per row or per tensor, as
ml_dtypes rounds) and weights per output channel or per tensor; w4a4
quantizes both to int4 (weights per output channel, inputs per row) after
rotating K on both sides with the same float32 Walsh-Hadamard butterflies
as the runtime, or without rotation. The
outputs must
agree to float32 accumulation error (TOLERANCE, relative to the largest
|output|), so any mistake in packing, scales, zero points, transposition
or the kernels' decoding shows.

Prints one line per scheme and `N passed, N failed`.
"""

import argparse
import os
import sys

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from check_runner import run_all
from kiln_tools import forward

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test",
                                "Tools", "Inputs"))
from write_rotation import orthogonal, write_safetensors  # noqa: E402

ROTATION = orthogonal(64, np.random.default_rng(7)).astype(np.float32)

SEED = 20261203
M, K, N, P = 5, 64, 96, 40
TOLERANCE = 1e-5
SCHEMES = {
    "w8a16": (["--quant=w8a16"], 8, 0, False),
    "w4a16 g16": (["--quant=w4a16", "--quant-group=16"], 4, 16, False),
    "w4a16 g32 zero points": (["--quant=w4a16", "--quant-group=32", "--quant-zero-points"],
                              4, 32, True),
    "fp8": (["--quant=fp8"], "f8 rows", 0, False),
    "fp8 per-tensor": (["--quant=fp8", "--quant-weight-scales=tensor",
                        "--quant-activations=tensor"], "f8 tensor", 0, False),
    "w4a4 hadamard": (["--quant=w4a4"], "w4a4", 0, True),
    "w4a4 no rotation": (["--quant=w4a4", "--quant-rotation=none"], "w4a4", 0, False),
    # A learned-style rotation for K = 64 from a file; K = 96 falls back to
    # Hadamard blocks of 32 (ROTATION_FILE, written by main()).
    "w4a4 rotation file": (["--quant=w4a4", "--quant-rotation=ROTATION_FILE"], "w4a4", 0,
                           "file"),
}


def hadamard(a):
    """kiln.hadamard in float32 along the last axis, blocks of the largest
    power of two dividing it, with the runtime's butterfly order."""
    a = np.array(a, dtype=np.float32)
    n = a.shape[-1] & -a.shape[-1]
    v = a.reshape(-1, n).copy()
    h = 1
    while h < n:
        v = v.reshape(-1, n // (2 * h), 2, h)
        x, y = v[:, :, 0, :].copy(), v[:, :, 1, :].copy()
        v[:, :, 0, :], v[:, :, 1, :] = x + y, x - y
        v = v.reshape(-1, n)
        h *= 2
    v = v * (np.float32(1) / np.sqrt(np.float32(n)))
    return v.reshape(a.shape)


def rotate_file(a, r):
    """kiln.rotate: blocks of the last axis times r (f64 sums, rounded to
    float32 once) where r's size divides it, else kiln.hadamard."""
    n = r.shape[0]
    if a.shape[-1] % n:
        return hadamard(a)
    a = np.asarray(a, np.float32)
    v = a.reshape(-1, n).astype(np.float64) @ r.astype(np.float32).astype(np.float64)
    return v.astype(np.float32).reshape(a.shape)


def fake_quant_i4_rows(a):
    """Symmetric int4 per row (scale max|a| / 7), dequantized in float64."""
    a = a.astype(np.float32)
    amax = np.abs(a).max(axis=-1, keepdims=True)
    scale = np.where(amax > 0, amax / np.float32(7), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(a / scale), -8, 7)
    return q * scale.astype(np.float64)
E4M3_MAX = 448.0


def fake_quant_f8(a, per_row):
    """E4M3 quantize-dequantize of a 2-D array in float64: one scale per row
    or one for the whole array, max|a| / 448 in float32."""
    a = a.astype(np.float32)
    amax = np.abs(a).max(axis=-1, keepdims=True) if per_row else np.abs(a).max()
    scale = np.where(amax > 0, amax / np.float32(E4M3_MAX), np.float32(1)).astype(np.float32)
    q = np.clip(a / scale, -E4M3_MAX, E4M3_MAX).astype(ml_dtypes.float8_e4m3fn)
    return q.astype(np.float64) * scale.astype(np.float64)


def write_model(path, w1, w2):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [M, P])
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["y"], name="proj"),
             helper.make_node("Gemm", ["y", "w2"], ["z"], name="head", transB=1)]
    graph = helper.make_graph(nodes, "quant", [x], [z],
                              [numpy_helper.from_array(w1, "w1"),
                               numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)


def fake_quant(w_nk, bits, group, zero_points):
    """Quantizes and dequantizes an output-major [N, K] weight in float64."""
    w = w_nk.astype(np.float32)
    n, k = w.shape
    g = k if group == 0 else group
    blocks = w.reshape(n, k // g, g)
    if zero_points:
        lo = np.minimum(blocks.min(axis=-1, keepdims=True), 0)
        hi = np.maximum(blocks.max(axis=-1, keepdims=True), 0)
        qmax = 2 ** bits - 1
        scale = np.where(hi > lo, (hi - lo) / np.float32(qmax), np.float32(1)).astype(np.float32)
        zp = np.clip(np.rint(np.float32(0) - lo / scale), 0, qmax)
        q = np.clip(np.rint(blocks / scale) + zp, 0, qmax)
        return ((q - zp) * scale.astype(np.float64)).reshape(n, k)
    qmax = 2 ** (bits - 1) - 1
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    scale = np.where(amax > 0, amax / np.float32(qmax), np.float32(1)).astype(np.float32)
    q = np.clip(np.rint(blocks / scale), -qmax - 1, qmax)
    return (q * scale.astype(np.float64)).reshape(n, k)


def check(options, bits, group, zp, x, w1, w2, bin_dir, workdir):
    model = os.path.join(workdir, "model.onnx")
    write_model(model, w1, w2)
    if zp == "file":
        path = os.path.join(workdir, "rotation.safetensors")
        write_safetensors(path, {"R1": ROTATION})
        options = [o.replace("ROTATION_FILE", path) for o in options]
    got = forward(bin_dir, model, os.path.join(workdir, "q.kiln"), [("x", x)], workdir,
                  options)[0]
    if bits == "w4a4":  # int4 weights per channel and inputs per token, rotated or not
        if zp == "file":
            rot = lambda a: rotate_file(a, ROTATION)  # noqa: E731
        else:
            rot = hadamard if zp else (lambda a: np.asarray(a, np.float32))
        d1 = fake_quant_i4_rows(rot(w1.T))
        d2 = fake_quant_i4_rows(rot(w2))
        y = fake_quant_i4_rows(rot(x)) @ d1.T
        want = fake_quant_i4_rows(rot(y.astype(np.float32))) @ d2.T
    elif isinstance(bits, str):  # fp8: weights and both matmul inputs
        per_row = bits == "f8 rows"
        d1 = fake_quant_f8(w1.T, per_row)
        d2 = fake_quant_f8(w2, per_row)
        y = fake_quant_f8(x, per_row) @ d1.T
        want = fake_quant_f8(y.astype(np.float32), per_row) @ d2.T
    else:
        d1 = fake_quant(w1.T, bits, group, zp)  # [N, K]
        d2 = fake_quant(w2, bits, group, zp)
        y = x.astype(np.float64) @ d1.T
        want = y.astype(np.float32).astype(np.float64) @ d2.T
    err = float(np.abs(got - want).max() / np.abs(want).max())
    plain = x.astype(np.float64) @ w1 @ w2.T
    qerr = float(np.abs(want - plain).max() / np.abs(plain).max())
    problems = [] if err <= TOLERANCE else [
        f"error {err:.3g} against the numpy reference > {TOLERANCE}"]
    return problems, (f"equal to numpy's quantize-dequantize-matmul within {err:.1e} (the "
                      f"quantization itself moves the output by {qerr:.1e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", required=True, help="folder holding kiln-compile and kiln-run")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    w1 = rng.standard_normal((K, N)).astype(np.float32)
    w2 = rng.standard_normal((P, N)).astype(np.float32)
    x = rng.standard_normal((M, K)).astype(np.float32)
    runs = [(name, spec) for name, spec in SCHEMES.items()]
    return run_all(runs, lambda options, bits, group, zp, workdir:
                   check(options, bits, group, zp, x, w1, w2, args.bin, workdir))


if __name__ == "__main__":
    sys.exit(main())
