"""The files a run writes: the CSV (streamed by the drivers), the JSON and the HTML report.

One `Outputs` per run, held by a scan or a watch alike: it checks the paths before any work and
writes the two summaries whenever the driver says they are due.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from patchscan.errors import UsageError

if TYPE_CHECKING:
    from patchscan.report.summary import Summary


@dataclass(frozen=True)
class Outputs:
    csv: Path | None = None
    json: Path | None = None
    report: Path | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        """The outputs asked for, in the order csv, json, report (the store sits beside the
        first)."""
        return tuple(p for p in (self.csv, self.json, self.report) if p is not None)

    @property
    def summaries(self) -> bool:
        """Whether a JSON or HTML summary is asked for (a CSV alone needs no Summary's work)."""
        return self.json is not None or self.report is not None

    def check(self) -> None:
        """Usage errors found before any work starts (exit code 2)."""
        for output in self.paths:
            if output.is_dir():
                raise UsageError(f"{output}: is a folder, expected a file name")
            if not output.parent.is_dir():
                raise UsageError(f"{output}: folder {output.parent} does not exist")
            _check_writable(output)

    def write(self, summary: Summary) -> None:
        """The JSON and the HTML report, each replaced atomically.

        The writers are imported only here (they bring numpy and PIL): a CSV-only scan never
        needs them, and they would hold up the workers' start.
        """
        if self.json is not None:
            from patchscan.report.json_writer import write_json

            write_json(summary, self.json)
        if self.report is not None:
            from patchscan.report.html_writer import write_html

            write_html(summary, self.report)


def _check_writable(output: Path) -> None:
    """A folder that takes no new file (permissions, a read-only share) is found before the scan,
    not after it, and named as the user gave it. The probe is a nameless temp file (O_TMPFILE on
    Linux: no name that a watched folder or another program could see), created and dropped;
    permission bits alone would not do, as root passes every os.access check."""
    try:
        with tempfile.TemporaryFile(dir=output.parent):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
