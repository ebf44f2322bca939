"""`make mutate`'s last step: killed / survived per module from mutmut's results.

mutmut 3 keeps one JSON file per mutated module, mutants/<path>.meta, with an exit code per
mutant (the fast tests' exit code with that mutant switched on). This reads those files, so it
needs no mutmut import and works on a run that was stopped part-way (its mutants not yet run
are counted as "not run"). Usage: python bench/mutation_summary.py build/mutation/mutants
[--markdown] [--survivors].
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

# mutmut 3.8's meaning of the exit codes (mutmut/stats.py); anything else is "suspicious".
STATUS_BY_EXIT_CODE: dict[int | None, str] = {
    None: "not run",
    0: "survived",
    1: "killed",
    3: "killed",  # an internal error in pytest
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    37: "killed",  # caught by the type checker (not configured here)
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    -9: "segfault",
    -11: "segfault",
}
COLUMNS = ("killed", "survived", "timeout", "no tests", "other", "not run")


def status_of(exit_code: int | None) -> str:
    return STATUS_BY_EXIT_CODE.get(exit_code, "suspicious")


def load(mutants: Path, *, confirmed: bool = True) -> dict[str, dict[str, str]]:
    """{module path: {mutant name: status}}, in path order. With `confirmed`, a survivor that
    bench/mutation_confirm.py saw killed in a fresh process, with its function's code unchanged
    since, counts as killed."""
    by_module: dict[str, dict[str, str]] = {}
    again = _confirmations(mutants) if confirmed else {}
    hashes = function_hashes(mutants)
    for meta in sorted(mutants.rglob("*.py.meta")):
        exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        module = meta.relative_to(mutants).as_posix().removesuffix(".meta")
        by_module[module] = {}
        for name, exit_code in exit_codes.items():
            status = status_of(exit_code)
            seen = again.get(name)
            unchanged = seen and seen["hash"] == hashes.get(function_of(name))
            by_module[module][name] = (
                seen["verdict"] if status == "survived" and unchanged else status
            )
    return by_module


def function_hashes(mutants: Path) -> dict[str, str]:
    """Each mutated function's code hash as mutmut keeps it, by its full name
    (patchscan.store.xǁResultStoreǁ__init__): a meta file keys them by the function alone."""
    hashes: dict[str, str] = {}
    for meta in mutants.rglob("*.py.meta"):
        module = meta.relative_to(mutants).as_posix().removesuffix(".py.meta").replace("/", ".")
        by_name = json.loads(meta.read_text()).get("hash_by_function_name", {})
        hashes.update({f"{module}.{name}": code for name, code in by_name.items()})
    return hashes


def function_of(mutant: str) -> str:
    """patchscan.store.xǁResultStoreǁ__init____mutmut_8 -> patchscan.store.xǁResultStoreǁ__init__"""
    return mutant.rsplit("__mutmut_", 1)[0]


def _confirmations(mutants: Path) -> dict[str, dict[str, str]]:
    path = mutants / CONFIRMED
    return json.loads(path.read_text()) if path.exists() else {}


CONFIRMED = "confirmed.json"  # bench/mutation_confirm.py's verdicts


def counts(statuses: dict[str, str]) -> Counter[str]:
    counter: Counter[str] = Counter()
    for status in statuses.values():
        counter[status if status in COLUMNS else "other"] += 1
    return counter


def score(counter: Counter[str]) -> str:
    """Killed among the mutants that were run: a timeout is not counted as a kill."""
    run = sum(counter.values()) - counter["not run"]
    return f"{100 * counter['killed'] / run:.1f}%" if run else "-"


def table(by_module: dict[str, dict[str, str]], *, markdown: bool) -> list[str]:
    header = ("module", "mutants", *COLUMNS, "score")
    rows: list[tuple[str, ...]] = []
    total: Counter[str] = Counter()
    for module, statuses in by_module.items():
        counter = counts(statuses)
        total += counter
        rows.append(
            (module, str(len(statuses)), *(str(counter[c]) for c in COLUMNS), score(counter))
        )
    mutants = sum(len(s) for s in by_module.values())
    rows.append(("all", str(mutants), *(str(total[c]) for c in COLUMNS), score(total)))
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return lines
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in (header, *rows)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mutants", type=Path, help="mutmut's mutants/ folder")
    parser.add_argument("--markdown", action="store_true", help="the table for docs/mutation.md")
    parser.add_argument("--survivors", action="store_true", help="also list what was not killed")
    args = parser.parse_args(argv)
    by_module = load(args.mutants)
    if not by_module:
        print(f"no mutmut results under {args.mutants}", file=sys.stderr)
        return 2
    print("\n".join(table(by_module, markdown=args.markdown)))
    if args.survivors:
        for statuses in by_module.values():
            for name, status in statuses.items():
                if status not in ("killed", "not run"):
                    print(f"{status}: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
