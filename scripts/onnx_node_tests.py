#!/usr/bin/env python3
"""Runs every ONNX backend node test whose ops kiln-import supports through
kiln end to end and writes the per-op table of docs/onnx-node-tests.md.

    onnx_node_tests.py --kiln-import build/bin/kiln-import -o docs/onnx-node-tests.md
    onnx_node_tests.py --kiln-import build/bin/kiln-import --check docs/onnx-node-tests.md
    onnx_node_tests.py --kiln-import build/bin/kiln-import --only test_add test_gemm_default

The node tests come from the `onnx` Python package (1.22.0 is the last release
that ships them). A test counts when all of its nodes' ops are supported, and
goes through four stages; each one runs only when the previous one passed:

  import   kiln-import model.onnx exits 0 (the imported IR verifies)
  compile  kiln-compile model.onnx -o model.kiln --quiet exits 0
  run      kiln-run model.kiln --threads 1 --inputs test_data_set_0/input_N.pb...
           --output-dir out exits 0
  match    every test_data_set_0/output_N.pb equals out/output_N.pb: same
           count, shape and dtype, and values within the tolerance of TOLERANCES
           below (NaN where NaN is expected, infinities equal, integers and
           bools exact).

kiln-compile and kiln-run default to the kiln-import binary's folder. Tests run
--jobs at a time (2); each tool call gets --timeout seconds (60), and a call
that takes longer fails its stage with "timed out after N s". Every failing
test prints one line, `FAIL <test> [<stage>]: <reason>` (the reason is the
tool's first error line, without its source location). --check regenerates the
table and fails when the committed file differs, so the doc stays true. The
last line is `N passed, N failed` (passed: through all four stages).
"""

import argparse
import collections
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

STAGES = ("import", "compile", "run", "match")

# Tolerances per element type, as (rtol, atol); a value passes when
# |got - expected| <= atol + rtol * |expected|. float32 and float64 use what
# the ONNX backend test runner uses for every node test (onnx.backend.test
# loader: rtol=1e-3, atol=1e-7; no node test ships a data.json overriding
# them). float16 keeps them too: one float16 ulp is at most 2^-10 (< 1e-3) of
# the value, so a kernel that computes in float32 and rounds once passes.
# bfloat16 has 8 significant bits, so one rounding apart is up to 2^-7 of the
# value; rtol 2^-7 allows exactly one ulp. float8 results come from one
# specified rounding (Cast, QuantizeLinear) and must be exact, as must every
# integer and bool.
TOLERANCES = {
    "float64": (1e-3, 1e-7),
    "float32": (1e-3, 1e-7),
    "float16": (1e-3, 1e-7),
    "bfloat16": (2.0 ** -7, 1e-7),
}
EXACT_FLOAT = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
               "float8_e8m0fnu", "float4_e2m1fn")


def node_test_root():
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")


def supported_ops(kiln_import):
    out = subprocess.run([kiln_import, "--list-ops"], check=True, capture_output=True,
                         text=True).stdout
    ops = {}
    for line in out.splitlines():
        name, min_opset = line.rsplit(" ", 1)
        domain, op = name.split("::")
        ops[(domain, op)] = int(min_opset)
    return ops


def primary_op(test_name, graph):
    """The op a test is about: its single node, or for an _expanded test the
    op of the test it expands."""
    if len(graph.node) == 1:
        node = graph.node[0]
        return (node.domain if node.domain != "ai.onnx" else "", node.op_type)
    return None


def select_tests(ops, only=None):
    """[(test, op)] for every node test whose ops are all supported."""
    root = node_test_root()
    by_name = {}
    for test in sorted(os.listdir(root)):
        model_path = os.path.join(root, test, "model.onnx")
        if not os.path.exists(model_path):
            continue
        by_name[test] = onnx.load(model_path, load_external_data=False)
    selected = []
    for test, model in by_name.items():
        if only and test not in only:
            continue
        graph = model.graph
        used = {(n.domain if n.domain != "ai.onnx" else "", n.op_type) for n in graph.node}
        if not used or not used <= set(ops):
            continue
        op = primary_op(test, graph)
        if op is None and test.endswith("_expanded") and test[:-9] in by_name:
            op = primary_op(test, by_name[test[:-9]].graph)
        if op is None or op not in ops:
            continue
        selected.append((test, op))
    return selected


def clean_reason(text, test_dir, work_dir):
    """One stable line from a tool's stderr: the first error line, without
    the tool's prefix, file paths and the runtime's [file:line] suffix."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    if not lines:
        return ""
    line = next((l for l in lines if "error" in l), lines[0])
    line = line.replace(test_dir + os.sep, "").replace(work_dir + os.sep, "")
    line = re.sub(r"^kiln-[a-z]+: (error: )?", "", line)
    line = re.sub(r" \[[^\[\]]*:\d+\]$", "", line)
    return line


def import_reason(text):
    """kiln-import's reason as the table has always shown it: the last line,
    without the path and the node prefix."""
    message = text.strip().splitlines()[-1] if text.strip() else "failed"
    return message.split("): ", 1)[-1].split("model.onnx: ", 1)[-1]


def tool(cmd, timeout, cwd):
    """(ok, stderr) of one tool call; a timeout is a failure."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:g} s"
    except OSError as e:  # the tool is missing or not executable
        return False, f"cannot run {os.path.basename(cmd[0])}: {e.strerror}"
    if proc.returncode < 0:
        err = proc.stderr.strip().splitlines()
        return False, (f"killed by signal {-proc.returncode}" +
                       (f": {err[0]}" if err else ""))
    return proc.returncode == 0, proc.stderr if proc.returncode else ""


def fmt(v):
    return f"{float(v):.7g}"


def compare(name, got, want):
    """'' when `got` matches `want`, else why not (one line)."""
    if got.shape != want.shape:
        return f"{name}: shape {list(got.shape)}, expected {list(want.shape)}"
    if got.dtype != want.dtype:
        return f"{name}: dtype {got.dtype}, expected {want.dtype}"
    dtype = str(want.dtype)
    if dtype in TOLERANCES or dtype in EXACT_FLOAT:
        rtol, atol = TOLERANCES.get(dtype, (0.0, 0.0))
        g = got.astype(np.float64)
        w = want.astype(np.float64)
        gnan, wnan = np.isnan(g), np.isnan(w)
        finite = np.isfinite(w) & np.isfinite(g)
        bad = gnan != wnan
        # Infinities (and a finite value where one is expected) must be equal.
        both = ~gnan & ~wnan
        bad |= both & ~finite & (g != w)
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.where(finite, np.abs(g - w), 0.0)
            bad |= finite & (diff > atol + rtol * np.abs(w))
        what = f"rtol {rtol:g}, atol {atol:g}" if (rtol or atol) else "exactly"
    else:
        g, w = got, want
        bad = got != want
        diff = None
        what = "exactly"
    count = int(np.count_nonzero(bad))
    if count == 0:
        return ""
    if diff is not None and np.any(bad & np.isfinite(diff) & (diff > 0)):
        idx = np.unravel_index(int(np.argmax(np.where(bad, diff, -1.0))), bad.shape)
    else:
        idx = np.unravel_index(int(np.argmax(bad)), bad.shape)
    gv, wv = g[idx], w[idx]
    gs = fmt(gv) if diff is not None else str(gv.item() if hasattr(gv, "item") else gv)
    ws = fmt(wv) if diff is not None else str(wv.item() if hasattr(wv, "item") else wv)
    return (f"{name}: {count} of {bad.size} values differ ({what}); at "
            f"{list(int(i) for i in idx)}: got {gs}, expected {ws}")


def match_outputs(data_dir, out_dir):
    expected = sorted((f for f in os.listdir(data_dir) if re.fullmatch(r"output_\d+\.pb", f)),
                      key=lambda f: int(f[7:-3]))
    produced = [f for f in os.listdir(out_dir) if re.fullmatch(r"output_\d+\.pb", f)]
    if len(produced) != len(expected):
        return f"kiln-run wrote {len(produced)} outputs, the test expects {len(expected)}"
    for f in expected:
        want = numpy_helper.to_array(onnx.load_tensor(os.path.join(data_dir, f)))
        got = numpy_helper.to_array(onnx.load_tensor(os.path.join(out_dir, f)))
        why = compare(f[:-3], got, want)
        if why:
            return why
    return ""


def run_test(test, tools, timeout):
    """(stage reached, ok, reason): the first stage that failed, or
    ('match', True, '')."""
    kiln_import, kiln_compile, kiln_run = tools
    test_dir = os.path.join(node_test_root(), test)
    model = os.path.join(test_dir, "model.onnx")
    with tempfile.TemporaryDirectory(prefix="kiln-node-") as work:
        ok, err = tool([kiln_import, model, "-o", os.devnull], timeout, work)
        if not ok:
            return "import", False, (err if err.startswith(("timed out", "killed"))
                                     else import_reason(err))
        ok, err = tool([kiln_compile, model, "-o", "model.kiln", "--quiet"], timeout, work)
        if not ok:
            return "compile", False, clean_reason(err, test_dir, work) or "failed"
        data = os.path.join(test_dir, "test_data_set_0")
        inputs = sorted((f for f in os.listdir(data) if re.fullmatch(r"input_\d+\.pb", f)),
                        key=lambda f: int(f[6:-3]))
        os.mkdir(os.path.join(work, "out"))
        # A model without inputs runs with --output-dir alone.
        ok, err = tool([kiln_run, "model.kiln", "--threads", "1",
                        *(["--inputs", *[os.path.join(data, f) for f in inputs]] if inputs
                          else []), "--output-dir", "out"], timeout, work)
        if not ok:
            return "run", False, clean_reason(err, test_dir, work) or "failed"
        try:
            why = match_outputs(data, os.path.join(work, "out"))
        except Exception as e:  # an unreadable output is a mismatch, not a crash
            why = f"cannot read the outputs: {type(e).__name__}: {e}".splitlines()[0]
        return "match", not why, why


def run(tools, jobs, timeout, only=None):
    ops = supported_ops(tools[0])
    selected = select_tests(ops, only)
    for name in sorted(set(only or ()) - {test for test, _ in selected}):
        print(f"warning: {name}: no such node test, or kiln-import lacks one of its ops")
    results = collections.defaultdict(list)  # op -> [(test, stage, ok, reason)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [(test, op, pool.submit(run_test, test, tools, timeout))
                   for test, op in selected]
        for test, op, fut in futures:
            stage, ok, reason = fut.result()
            results[op].append((test, stage, ok, reason))
            if not ok:
                print(f"FAIL {test} [{stage}]: {reason}", flush=True)
    return ops, results


def passed_stage(stage, ok, s):
    """Whether a test that stopped at `stage` (ok or not) passed stage s."""
    reached = STAGES.index(stage)
    return STAGES.index(s) < reached or (STAGES.index(s) == reached and ok)


def stage_counts(rows):
    return [sum(passed_stage(st, ok, s) for _, st, ok, _ in rows) for s in STAGES]


def render(ops, results, command, timeout):
    lines = [
        "# ONNX backend node tests through kiln",
        "",
        "Generated by `scripts/onnx_node_tests.py` from the node tests shipped in the",
        f"`onnx` Python package ({onnx.__version__}) with",
        "",
        "```sh",
        command,
        "```",
        "",
        "CI (`test/Docs/onnx-node-tests.test`) regenerates it with `--check` and fails",
        "when it differs. A test is listed under the op it tests when kiln-import",
        "supports every op in it. Each test goes through four stages, each only after",
        "the previous one passed: **imported** (kiln-import exits 0 and the IR",
        "verifies), **compiled** (`kiln-compile model.onnx -o model.kiln` for the CPU",
        "target), **ran** (`kiln-run model.kiln --threads 1 --inputs",
        "test_data_set_0/input_N.pb... --output-dir out` exits 0) and **matched**",
        "(every `output_N.pb` equals the test's: same count, shape and dtype; NaN",
        "where NaN is expected, infinities equal; float32/float64/float16 within",
        "rtol 1e-3, atol 1e-7, the ONNX backend runner's tolerance; bfloat16 within",
        "one ulp (rtol 2^-7); float8, integers and bools exact). A tool call that",
        f"takes over {timeout:g} s fails its stage.",
        "",
        "| op | min opset | tests | imported | compiled | ran | matched |",
        "|---|---|---|---|---|---|---|",
    ]
    totals = [0, 0, 0, 0, 0]
    for (domain, op), min_opset in sorted(ops.items()):
        rows = results.get((domain, op), [])
        counts = stage_counts(rows)
        totals = [a + b for a, b in zip(totals, [len(rows)] + counts)]
        name = f"{domain}::{op}" if domain else op
        lines.append(f"| {name} | {min_opset} | {len(rows)} | " +
                     " | ".join(str(c) for c in counts) + " |")
    lines.append(f"| **total** | | {totals[0]} | " +
                 " | ".join(str(c) for c in totals[1:]) + " |")
    lines += ["",
              f"Total: {totals[1]} of {totals[0]} node tests import, {totals[2]} compile, "
              f"{totals[3]} run and {totals[4]} match.",
              "",
              "## Failures",
              "",
              "Per op, the stage each failing test stopped at and why (the tool's first",
              "error line, or how the outputs differ), tests with one reason together.",
              ""]
    for (domain, op), _ in sorted(ops.items()):
        rows = results.get((domain, op), [])
        failed = [(st, reason, test) for test, st, ok, reason in rows if not ok]
        if not failed:
            continue
        name = f"{domain}::{op}" if domain else op
        lines.append(f"### {name}")
        lines.append("")
        groups = collections.OrderedDict()
        for st, reason, test in sorted(failed, key=lambda r: (STAGES.index(r[0]), r[1], r[2])):
            groups.setdefault((st, reason), []).append(test)
        for (st, reason), tests in groups.items():
            names = ", ".join(f"`{t}`" for t in tests)
            lines.append(f"- {st}: {reason.replace('|', '&#124;')} — {names}")
        lines.append("")
    return "\n".join(lines), totals


def sibling(kiln_import, name):
    path = shutil.which(kiln_import) or kiln_import
    candidate = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    return candidate if os.path.exists(candidate) else (shutil.which(name) or candidate)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln-import", required=True)
    ap.add_argument("--kiln-compile", help="default: next to kiln-import")
    ap.add_argument("--kiln-run", help="default: next to kiln-import")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="tests at a time (2)")
    ap.add_argument("--timeout", type=float, default=60,
                    help="seconds per tool call before the stage fails (60)")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("-o", "--output")
    group.add_argument("--check")
    group.add_argument("--only", nargs="+", metavar="TEST",
                       help="run just these tests and print their results (no table)")
    ap.add_argument("--per-op", action="store_true",
                    help="also print the per-op table (tests, imported, compiled, "
                         "ran, matched) on stdout")
    args = ap.parse_args()
    # Absolute, since the tools run in a scratch folder.
    tools = tuple(os.path.abspath(shutil.which(t) or t) for t in (
        args.kiln_import, args.kiln_compile or sibling(args.kiln_import, "kiln-compile"),
        args.kiln_run or sibling(args.kiln_import, "kiln-run")))
    ops, results = run(tools, args.jobs, args.timeout, set(args.only or ()))
    command = ("scripts/onnx_node_tests.py --kiln-import build/bin/kiln-import "
               "-o docs/onnx-node-tests.md")
    text, totals = render(ops, results, command, args.timeout)
    status = 0
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    elif args.check:
        with open(args.check) as f:
            if f.read() != text:
                print(f"{args.check} is out of date; regenerate it with "
                      f"scripts/onnx_node_tests.py --kiln-import build/bin/kiln-import "
                      f"-o {args.check}")
                status = 1
    if args.per_op:
        # The per-op table (passed/total per stage), as the doc has it.
        for line in text.splitlines():
            if line.startswith("| ") and not line.startswith("| op "):
                print(line)
    tests, imported, compiled, ran, matched = totals
    print(f"import {imported}/{tests}, compile {compiled}/{tests}, run {ran}/{tests}, "
          f"match {matched}/{tests}")
    print(f"{matched} passed, {tests - matched} failed")
    return status


if __name__ == "__main__":
    sys.exit(main())
