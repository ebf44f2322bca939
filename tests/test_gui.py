"""The desktop window, driven through its own widgets on a virtual X display (Xvfb)."""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SAMPLES, virtual_display

tk = pytest.importorskip("tkinter")


@pytest.fixture(scope="module")
def xvfb() -> Iterator[str]:
    """One display for the module: Tk does not survive its X server going away."""
    with virtual_display() as name:
        yield name


@pytest.fixture
def display(xvfb: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("DISPLAY", xvfb)
    return xvfb


def pump(root: tk.Tk, until: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the window did not get there in time"
        root.update()
        time.sleep(0.02)


def screenshot(root: tk.Tk, display: str, path: Path) -> None:
    from PIL import ImageGrab

    root.update()
    x, y = root.winfo_rootx(), root.winfo_rooty()
    image = ImageGrab.grab(xdisplay=display)
    image.crop((x, y, x + root.winfo_width(), y + root.winfo_height())).save(path)


def test_scan_then_watch_from_the_window(
    display: str, patches: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from patchscan.gui import App, results_folder, settings_file

    root = tk.Tk()
    try:
        app = App(root)
        assert "patchscan" in root.title()
        assert app.model.get() == "idc" and "H&E" in app.description.cget("text")
        app.folder.set(str(patches))
        app.scan_button.invoke()
        values: list[float] = []

        def done() -> bool:
            values.append(float(app.progress.cget("value")))
            return app.status.cget("text").startswith("Done")

        pump(root, done)
        # The bar filled as the files came: it knew its total and moved to it.
        assert str(app.progress.cget("mode")) == "determinate"
        assert float(app.progress.cget("maximum")) == 20 and values[-1] == 20
        assert app.status.cget("text").startswith("Done. 20 files:")
        assert app.message.cget("text") == ""
        assert str(app.report_button.cget("state")) == "normal"
        out = results_folder(patches)
        with open(out / "results.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 20
        # The idc model has a review band: the window counts the calls in it, as the CSV does.
        reviews = sum(row["review"] == "yes" for row in rows)
        assert reviews > 0 and app.status.cget("text").endswith(f"; {reviews} to review")
        assert (out / "report.html").stat().st_size > 10_000
        assert str(patches) in settings_file().read_text()  # remembered for next time
        shot = Path(request.config.rootpath) / "test-output" / "window-scan.png"
        shot.parent.mkdir(exist_ok=True)
        screenshot(root, display, shot)

        app.watch_toggle.invoke()  # on
        pump(root, lambda: app.status.cget("text").startswith("Watching"))
        new = patches / "9035" / "1" / "9035_idx5_x9_y9_class1.png"
        shutil.copy(next(SAMPLES.glob("9035/1/*.png")), new)
        pump(root, lambda: app.counts.total() == 1)
        app.watch_toggle.invoke()  # off: the watch saves and stops
        pump(root, lambda: app.status.cget("text").startswith("Done"))
        with open(out / "results.csv", newline="") as handle:
            assert len(list(csv.DictReader(handle))) == 21
    finally:
        root.destroy()


def test_problems_are_shown_in_the_window_in_plain_words(display: str, tmp_path: Path) -> None:
    from patchscan.gui import App

    root = tk.Tk()
    try:
        app = App(root)
        app.folder.set(str(tmp_path / "missing"))
        app.scan_button.invoke()
        root.update()
        assert app.message.cget("text") == f"Not a folder: {tmp_path / 'missing'}"
        assert app.worker is None
    finally:
        root.destroy()


def test_cancel_stops_a_scan_and_keeps_what_was_done(display: str, tmp_path: Path) -> None:
    """4,070 patches (the samples ten times over, as ten patients): Cancel as the first counts
    arrive ends the scan early; the CSV holds exactly the files the window counted."""
    from patchscan.gui import App, results_folder

    folder = tmp_path / "many"
    for copy in range(10):
        for source in SAMPLES.glob("*/*/*.png"):
            patient = f"{source.parts[-3]}{copy}"
            target = folder / patient / source.name.replace(source.parts[-3], patient, 1)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    root = tk.Tk()
    try:
        app = App(root)
        app.folder.set(str(folder))
        assert str(app.cancel_button.cget("state")) == "disabled"  # nothing to cancel yet
        app.scan_button.invoke()
        pump(root, lambda: app.counts.total() > 0)
        app.cancel_button.invoke()
        pump(root, lambda: not app._busy() and "saved" in app.status.cget("text"))
        root.update()
        assert app.status.cget("text").startswith("Cancelled; the results so far are saved.")
        assert str(app.cancel_button.cget("state")) == "disabled"
        with open(results_folder(folder) / "results.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert 0 < len(rows) == app.counts.total() < 4070
    finally:
        root.destroy()


def test_results_go_where_the_user_chose_and_it_is_remembered(
    display: str, patches: Path, tmp_path: Path
) -> None:
    from patchscan.gui import App, default_results_root, results_folder

    chosen = tmp_path / "lab results"
    root = tk.Tk()
    try:
        app = App(root)
        assert app.results_root.get() == str(default_results_root())
        assert str(default_results_root()).startswith(str(tmp_path / "home"))  # per user
        app.folder.set(str(patches))
        app.results_root.set(str(chosen))
        app.scan_button.invoke()
        pump(root, lambda: app.status.cget("text").startswith("Done"))
        assert (results_folder(patches, chosen) / "results.csv").is_file()
        assert not results_folder(patches).exists()  # nothing went to the default
        assert str(app.report_button.cget("state")) == "normal"
    finally:
        root.destroy()
    root = tk.Tk()
    try:
        assert App(root).results_root.get() == str(chosen)  # the next start remembers it
    finally:
        root.destroy()


def test_a_folder_dropped_on_the_window_is_the_one_to_scan(
    display: str, patches: Path, tmp_path: Path
) -> None:
    """The app's root takes drops (tkdnd loads here); what tkdnd hands over (a Tcl list, braced
    where a path has spaces; a file stands for its folder) sets the folder."""
    from patchscan.gui import App, new_root

    spaced = tmp_path / "lab scans"
    spaced.mkdir()
    (spaced / "a.png").write_bytes(b"")
    root = new_root()
    try:
        assert hasattr(root, "drop_target_register")  # tkinterdnd2 loaded, not plain Tk
        app = App(root)
        app.drop(f"{{{spaced}}}")
        assert app.folder.get() == str(spaced)
        app.drop(f"{{{spaced / 'a.png'}}} {patches}")
        assert app.folder.get() == str(spaced)  # the first one; a file stands for its folder
        app.drop(str(patches))
        assert app.folder.get() == str(patches)
        assert str(root.tk.call("ttk::style", "theme", "use")).startswith("sun-valley")
    finally:
        root.destroy()
