#!/usr/bin/env python3
"""Checks that every kiln.weight_decl in an imported module points at the
right bytes: reads OFFSET/LENGTH of its #kiln.external storage from the file
it names (relative to the model's folder) and compares them with the
initializer's values as onnx loads them.

    check_weights.py MODULE.mlir MODEL.onnx
Prints `checked N weights` or the first mismatch (exit 1)."""

import os
import re
import sys

import onnx
from onnx import numpy_helper

DECL = re.compile(r'kiln\.weight_decl @("(?:[^"\\]|\\.)*"|[\w.$-]+) : tensor<([^>]*)>'
                  r' at #kiln\.external<"([^"]*)", offset = (\d+), length = (\d+)>')


def main(mlir_path, model_path):
    model = onnx.load(model_path, load_external_data=True)
    # raw_data holds exactly the stored layout (4-bit types packed); typed
    # fields are converted through numpy.
    inits = {t.name: (t.raw_data if t.HasField("raw_data")
                      else numpy_helper.to_array(t).tobytes())
             for t in model.graph.initializer}
    folder = os.path.dirname(model_path)
    checked = 0
    with open(mlir_path) as f:
        text = f.read()
    for m in DECL.finditer(text):
        name = m.group(1).strip('"')
        location, offset, length = m.group(3), int(m.group(4)), int(m.group(5))
        expected = inits[name]
        with open(os.path.join(folder, location), "rb") as data:
            data.seek(offset)
            got = data.read(length)
        if got != expected:
            print(f"weight {name}: bytes at {location}+{offset} ({length}) differ "
                  f"from the initializer ({len(expected)} bytes)")
            return 1
        checked += 1
    if checked == 0:
        print("no weight_decl with storage found")
        return 1
    print(f"checked {checked} weights")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
