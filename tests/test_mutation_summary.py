"""make mutate's summary: mutmut's verdicts, with survivors confirmed killed in a fresh process
counted as killed only while their function's code is unchanged."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "mutation_summary", Path(__file__).resolve().parents[1] / "bench" / "mutation_summary.py"
)
assert _spec is not None and _spec.loader is not None
summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summary)  # bench/ is scripts, not a package: load it by its path
CONFIRMED, function_hashes, function_of, load = (
    summary.CONFIRMED,
    summary.function_hashes,
    summary.function_of,
    summary.load,
)


def meta(folder: Path, exit_codes: dict[str, int | None], hashes: dict[str, str]) -> None:
    path = folder / "patchscan" / "store.py.meta"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"exit_code_by_key": exit_codes, "hash_by_function_name": hashes}))


def test_a_confirmed_kill_counts_only_while_the_code_is_the_one_it_was_seen_on(
    tmp_path: Path,
) -> None:
    name = "patchscan.store.xǁResultStoreǁ__init____mutmut_8"
    other = "patchscan.store.x_store_files__mutmut_5"
    meta(tmp_path, {name: 0, other: 0, "patchscan.store.x_key__mutmut_1": 1}, {
        "xǁResultStoreǁ__init__": "aaa", "x_store_files": "bbb", "x_key": "ccc"
    })  # fmt: skip
    assert function_of(name) == "patchscan.store.xǁResultStoreǁ__init__"
    assert function_hashes(tmp_path)["patchscan.store.x_store_files"] == "bbb"
    seen = {
        name: {"verdict": "killed", "hash": "aaa"},
        other: {"verdict": "killed", "hash": "old"},  # the function changed since
    }
    (tmp_path / CONFIRMED).write_text(json.dumps(seen))
    statuses = load(tmp_path)["patchscan/store.py"]
    assert statuses == {
        name: "killed",
        other: "survived",
        "patchscan.store.x_key__mutmut_1": "killed",
    }
    assert load(tmp_path, confirmed=False)["patchscan/store.py"][name] == "survived"
