"""Prints a manifest's weights and qtensor values one per line, for FileCheck
(kiln-compile-quant.test)."""
import json
import sys

m = json.load(open(sys.argv[1]))
for w in m["weights"]:
    print("weight", w["name"], w["dtype"], w["shape"], w["kind"], w["location"])
for v in m["values"]:
    if v.get("kind") == "qtensor":
        print("qtensor", v["dtype"], v["shape"], "block", v["block"], "zero_points",
              v["zero_points"])
