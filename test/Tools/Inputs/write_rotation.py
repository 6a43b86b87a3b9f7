"""Writes a safetensors file of rotation matrices for kiln-compile
--quant-rotation tests: write_rotation.py OUT SIZE[,SIZE...] [--skew]
(random orthogonal matrices from a QR factorization, seed fixed; --skew
scales the first one by 1.1, so it is no longer orthogonal)."""
import json
import struct
import sys

import numpy as np


def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [at, at + a.nbytes]}
        blobs.append(a.tobytes())
        at += a.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def orthogonal(n, rng):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


if __name__ == "__main__":
    rng = np.random.default_rng(20261203)
    sizes = [int(s) for s in sys.argv[2].split(",")]
    mats = {f"R{i + 1}": orthogonal(n, rng) for i, n in enumerate(sizes)}
    if "--skew" in sys.argv:
        mats["R1"] = mats["R1"] * 1.1
    write_safetensors(sys.argv[1], mats)
