"""Writes graph inputs of the llama-genai test model as TensorProto files:
input_ids [B, S] (fixed-seed random ids), attention_mask [B, S] of ones and
empty pasts [B, 2, 0, 16], in graph-input order (as kiln-run --info lists)."""
import argparse
import os

import numpy as np
from onnx import numpy_helper

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("batch", type=int)
ap.add_argument("seq", type=int)
ap.add_argument("--ids-dtype", default="int64")
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
rng = np.random.default_rng(1)
tensors = [("input_ids", rng.integers(0, 256, (a.batch, a.seq)).astype(a.ids_dtype)),
           ("attention_mask", np.ones((a.batch, a.seq), np.int64))]
for name in ("past_key_values.0.key", "past_key_values.1.key",
             "past_key_values.0.value", "past_key_values.1.value"):
    tensors.append((name, np.zeros((a.batch, 2, 0, 16), np.float32)))
for i, (name, value) in enumerate(tensors):
    with open(os.path.join(a.out, f"input_{i}.pb"), "wb") as f:
        f.write(numpy_helper.from_array(value, name).SerializeToString())
