"""The JSON report: counts, groups, errors, metrics and provenance, for programs."""

from __future__ import annotations

import json
from pathlib import Path

from patchscan.atomic import write_text_atomic
from patchscan.report.summary import Summary


def write_json(summary: Summary, path: Path) -> None:
    write_text_atomic(path, json.dumps(summary.as_dict(), indent=2, ensure_ascii=False) + "\n")
