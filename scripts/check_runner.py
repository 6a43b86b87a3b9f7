"""Shared driver of the model check scripts (compare_ort.py, check_equiv.py).

run_all(runs, check) calls check(*args, workdir) for each (name, args) in a
fresh temporary folder, prints `PASS name: summary` or `FAIL name` with up to
eight problems, and ends with `N passed, N failed`. A check that raises is a
failure of its model only. Returns the exit status (1 on any failure).
"""
import sys
import tempfile


def run_all(runs, check):
    passed = failed = 0
    for name, args in runs:
        with tempfile.TemporaryDirectory() as workdir:
            try:
                problems, summary = check(*args, workdir)
            except Exception as e:  # one model's failure must not hide the others
                problems, summary = [f"{type(e).__name__}: {e}"], ""
        if problems:
            failed += 1
            print(f"FAIL {name}")
            for p in problems[:8]:
                print(f"     {p}")
        else:
            passed += 1
            print(f"PASS {name}: {summary}")
        sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
