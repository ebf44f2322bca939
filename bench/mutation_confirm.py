"""Run each surviving mutant again in a fresh pytest process: what mutmut's forking runner
reported as survived, checked the plain way.

mutmut 3.8 runs mutants in children forked from one long-lived pytest process. For some mutants
of this project (the result store's `check_same_thread`, a missing model row, a journal file's
name) it recorded "survived" although the tests it maps to the function fail on them when run
with the mutant switched on in a new process. This takes each survivor's mapped tests
(mutants/mutmut-stats.json), fastest first, runs them with `MUTANT_UNDER_TEST` set and `-x`, and
records the verdict with the function's code hash in mutants/confirmed.json; bench/mutation_summary.py
counts a confirmed kill as killed while that hash is the meta file's.
Usage: python bench/mutation_confirm.py build/mutation/mutants [module glob ...]
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mutation_summary import CONFIRMED, function_hashes, function_of, load

NO_TESTS_COLLECTED = 5  # pytest's exit code when none of the given tests exist any more


def verdict(mutants: Path, mutant: str, tests: list[str]) -> str:
    """killed / survived / no tests, with the mutant on, in a new pytest process."""
    if not tests:
        return "no tests"
    env = {**os.environ, "MUTANT_UNDER_TEST": mutant}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(command, cwd=mutants, env=env, capture_output=True, check=False)
    if done.returncode == 0:
        return "survived"
    return "no tests" if done.returncode == NO_TESTS_COLLECTED else "killed"


def main() -> int:
    mutants = Path(sys.argv[1])
    patterns = sys.argv[2:] or ["*"]
    stats = json.loads((mutants / "mutmut-stats.json").read_text())
    by_function, duration = stats["tests_by_mangled_function_name"], stats["duration_by_test"]
    record = mutants / CONFIRMED
    confirmed: dict[str, dict[str, str]] = json.loads(record.read_text()) if record.exists() else {}
    hashes = function_hashes(mutants)
    survivors = [
        name
        for module, statuses in load(mutants, confirmed=False).items()
        if any(fnmatch.fnmatch(module, p) for p in patterns)
        for name, status in statuses.items()
        if status == "survived"
    ]
    started = time.monotonic()
    for name in survivors:
        function = function_of(name)
        seen = confirmed.get(name, {})
        if seen.get("verdict") == "killed" and seen.get("hash") == hashes.get(function, ""):
            continue  # killed when run again, and its code has not changed since
        tests = sorted(by_function.get(function, []), key=lambda t: duration.get(t, 0))
        seen = verdict(mutants, name, tests)
        confirmed[name] = {"verdict": seen, "hash": hashes.get(function, "")}
        record.write_text(json.dumps(confirmed, indent=1, sort_keys=True))
        print(f"{seen:>8}  {name}", flush=True)
    print(f"{len(survivors)} survivors run again in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
