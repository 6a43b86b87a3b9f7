#!/usr/bin/env python3
"""Runs every kiln test suite (lit, then the GoogleTest suites through ctest)
and prints one summary line that CI reads: `total: N passed, N failed, N skipped`.

Exit status is non-zero when any test failed or a suite could not run."""

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET


def junit_counts(path):
    """(passed, failed, skipped) from a JUnit XML file."""
    root = ET.parse(path).getroot()
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def run(cmd, cwd=None):
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=cwd)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--lit", required=True)
    ap.add_argument("-j", "--jobs", default=str(os.cpu_count() or 2))
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=COMMAND",
                    help="another check, run with the shell; counts as one test")
    args = ap.parse_args()

    totals = [0, 0, 0]
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        lit_xml = os.path.join(tmp, "lit.xml")
        rc = run([sys.executable, args.lit, "-sv", "-j", args.jobs,
                  "--xunit-xml-output", lit_xml,
                  os.path.join(args.build_dir, "test")])
        if os.path.exists(lit_xml):
            counts = junit_counts(lit_xml)
            print(f"lit: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped")
            totals = [a + b for a, b in zip(totals, counts)]
        if rc != 0 and (not os.path.exists(lit_xml) or totals[1] == 0):
            problems.append(f"lit exited with {rc}")

        ctest_xml = os.path.join(tmp, "ctest.xml")
        rc = run(["ctest", "--test-dir", args.build_dir, "--output-on-failure",
                  "-j", args.jobs, "--output-junit", ctest_xml])
        if os.path.exists(ctest_xml):
            counts = junit_counts(ctest_xml)
            print(f"gtest: {counts[0]} passed, {counts[1]} failed, {counts[2]} skipped")
            totals = [a + b for a, b in zip(totals, counts)]
        else:
            problems.append(f"ctest wrote no results (exit {rc})")
        if rc != 0 and os.path.exists(ctest_xml) and junit_counts(ctest_xml)[1] == 0:
            problems.append(f"ctest exited with {rc}")

    for extra in args.extra:
        name, _, command = extra.partition("=")
        print(f"+ {command}", flush=True)
        rc = subprocess.call(command, shell=True)
        print(f"{name}: {'passed' if rc == 0 else f'FAILED (exit {rc})'}")
        totals[0 if rc == 0 else 1] += 1

    for p in problems:
        print(f"error: {p}")
    if totals[0] + totals[1] == 0:
        problems.append("no test ran")
        print("error: no test ran")
    print(f"total: {totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 1 if totals[1] or problems else 0


if __name__ == "__main__":
    sys.exit(main())
