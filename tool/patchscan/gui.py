"""The desktop window (Tk): pick a folder and a model, Scan or Watch, open the report.

The work runs on a thread and talks to the window through a queue polled every 100 ms, so the
window stays responsive; every failure is shown in the window in one plain line. Results go to a
folder the user can choose, by default under the OS's per-user data folder
(`<data>/patchscan/results/<folder name>-<hash>/`), never into the data folder or the app.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import tkinter as tk
import webbrowser
from collections import Counter
from pathlib import Path
from tkinter import filedialog, ttk
from typing import Any

import platformdirs

from patchscan import __version__
from patchscan.errors import PatchscanError
from patchscan.model import bundled_models, read_info
from patchscan.resources import icon_path
from patchscan.results import Result

log = logging.getLogger(__name__)

POLL_MS = 100


def settings_file() -> Path:
    """Where the window remembers the last folder, model and results folder: the per-user
    configuration folder of the OS (~/.config, %APPDATA%, ~/Library/Application Support)."""
    return Path(platformdirs.user_config_dir("patchscan", appauthor=False)) / "window.json"


def default_results_root() -> Path:
    """Results go under the per-user data folder of the OS unless the user chooses another:
    the data folder may be read-only or shared, and the app's own folder is no place for them."""
    return Path(platformdirs.user_data_dir("patchscan", appauthor=False)) / "results"


def results_folder(folder: Path, root: Path | None = None) -> Path:
    """The results of `folder` under `root`: one subfolder per data folder, named after it and
    a hash of its absolute path, so two folders of the same name do not mix."""
    absolute = folder.resolve()
    tag = hashlib.sha256(str(absolute).encode()).hexdigest()[:8]
    return (root or default_results_root()) / f"{absolute.name or 'root'}-{tag}"


def new_root() -> tk.Tk:
    """The window's Tk root: one that takes folders dropped on it (tkinterdnd2's tkdnd) where
    that loads, plain Tk elsewhere (the Choose… button still works)."""
    try:
        from tkinterdnd2 import TkinterDnD

        return TkinterDnD.Tk()
    except Exception as exc:  # ImportError, or TclError: no tkdnd build for this platform
        log.warning("drag and drop unavailable (%s): choose folders with Choose…", exc)
        return tk.Tk()


def apply_theme(root: tk.Tk) -> str:
    """Sun Valley (sv-ttk), light or dark as the system is set; Tk's own look where it cannot
    load. Returns the mode the window is in."""
    try:
        import darkdetect
        import sv_ttk

        mode = "dark" if (darkdetect.theme() or "").lower() == "dark" else "light"
        sv_ttk.set_theme(mode, root)
        return mode
    except Exception as exc:  # ImportError, TclError
        log.warning("the window's theme unavailable (%s): Tk's own look", exc)
        return "light"


# Text colours that read on either theme: quiet notes, problems.
_COLOURS = {"light": ("#555555", "#b00000"), "dark": ("#aaaaaa", "#ff7070")}


def _outputs(out: Path) -> tuple[Path, Path, Path]:
    """The CSV, JSON and HTML report in a folder's results folder (made if new)."""
    out.mkdir(parents=True, exist_ok=True)
    return out / "results.csv", out / "results.json", out / "report.html"


class App:
    def __init__(self, root: tk.Tk) -> None:
        self.root = root
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.worker: threading.Thread | None = None
        self.stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self.reviews = 0  # calls in the model's review band: what a person should look at
        self.cancelled = False  # the last scan was stopped by Cancel
        self.models = {name: read_info(path) for name, path in bundled_models().items()}
        remembered = self._load_settings()

        root.title(f"patchscan {__version__}")
        quiet, alarm = _COLOURS[apply_theme(root)]
        icon = icon_path()
        if icon.is_file():
            self.icon = tk.PhotoImage(master=root, file=str(icon))  # kept: Tk does not
            root.iconphoto(True, self.icon)
        root.minsize(620, 360)
        frame = ttk.Frame(root, padding=12)
        frame.grid(sticky="nsew")
        root.columnconfigure(0, weight=1)
        root.rowconfigure(0, weight=1)
        frame.columnconfigure(1, weight=1)

        self.folder = tk.StringVar(value=remembered.get("folder", ""))
        ttk.Label(frame, text="Folder").grid(row=0, column=0, sticky="w")
        ttk.Entry(frame, textvariable=self.folder).grid(row=0, column=1, sticky="ew", padx=6)
        ttk.Button(frame, text="Choose…", command=self.choose_folder).grid(row=0, column=2)

        self.results_root = tk.StringVar(
            value=remembered.get("results") or str(default_results_root())
        )
        ttk.Label(frame, text="Results in").grid(row=3, column=0, sticky="w", pady=(8, 0))
        ttk.Entry(frame, textvariable=self.results_root).grid(
            row=3, column=1, sticky="ew", padx=6, pady=(8, 0)
        )
        ttk.Button(frame, text="Choose…", command=self.choose_results).grid(
            row=3, column=2, pady=(8, 0)
        )

        names = list(self.models)
        chosen = remembered.get("model")
        self.model = tk.StringVar(value=chosen if chosen in names else (names or [""])[0])
        ttk.Label(frame, text="Model").grid(row=1, column=0, sticky="w", pady=(8, 0))
        picker = ttk.Combobox(frame, textvariable=self.model, values=names, state="readonly")
        picker.grid(row=1, column=1, sticky="w", padx=6, pady=(8, 0))
        picker.bind("<<ComboboxSelected>>", lambda event: self._describe())
        self.description = ttk.Label(frame, foreground=quiet)
        self.description.grid(row=2, column=1, columnspan=2, sticky="w", padx=6)

        buttons = ttk.Frame(frame)
        buttons.grid(row=4, column=0, columnspan=3, sticky="w", pady=10)
        self.scan_button = ttk.Button(buttons, text="Scan", command=self.start_scan)
        self.scan_button.grid(row=0, column=0)
        self.watching = tk.BooleanVar(value=False)
        self.watch_toggle = ttk.Checkbutton(
            buttons, text="Watch", variable=self.watching, command=self.toggle_watch
        )
        self.watch_toggle.grid(row=0, column=1, padx=8)
        self.report_button = ttk.Button(
            buttons, text="Open report", command=self.open_report, state="disabled"
        )
        self.report_button.grid(row=0, column=2)
        self.cancel_button = ttk.Button(
            buttons, text="Cancel", command=self.cancel, state="disabled"
        )
        self.cancel_button.grid(row=0, column=3, padx=(8, 0))

        self.progress = ttk.Progressbar(frame, mode="indeterminate")
        self.progress.grid(row=5, column=0, columnspan=3, sticky="ew")
        self.status = ttk.Label(frame, text="Choose a folder of images, then Scan.")
        self.status.grid(row=6, column=0, columnspan=3, sticky="w", pady=(6, 0))
        self.message = ttk.Label(frame, foreground=alarm, wraplength=520)
        self.message.grid(row=7, column=0, columnspan=3, sticky="w")

        if hasattr(root, "drop_target_register"):  # a tkinterdnd2 root (new_root)
            dnd: Any = root
            dnd.drop_target_register("DND_Files")
            dnd.dnd_bind("<<Drop>>", lambda event: self.drop(event.data))
        root.bind("<Return>", lambda event: self.start_scan())
        root.protocol("WM_DELETE_WINDOW", self.close)
        self._describe()
        self._update_report_button()
        root.after(POLL_MS, self._poll)

    # --- user actions ------------------------------------------------------------------------

    def choose_folder(self) -> None:
        folder = filedialog.askdirectory(initialdir=self.folder.get() or str(Path.home()))
        if folder:
            self.folder.set(folder)
            self._update_report_button()

    def drop(self, data: str) -> None:
        """A folder (or a file: its folder) dropped on the window becomes the folder to scan.
        tkdnd hands over a Tcl list of paths, braced where they hold spaces."""
        paths = [Path(p) for p in self.root.tk.splitlist(data)]
        if not paths:
            return
        folder = paths[0] if paths[0].is_dir() else paths[0].parent
        self.folder.set(str(folder))
        self.message.config(text="")
        self._update_report_button()

    def choose_results(self) -> None:
        root = filedialog.askdirectory(initialdir=self.results_root.get() or str(Path.home()))
        if root:
            self.results_root.set(root)
            self._update_report_button()

    def start_scan(self) -> None:
        folder = self._checked_folder()
        if folder is None or self._busy():
            return
        self._begin(f"Scanning {folder} …")
        model = self.model.get()  # Tk variables are read on the window's thread only
        out = self._results(folder)
        self.worker = threading.Thread(target=self._scan, args=(folder, model, out), daemon=True)
        self.worker.start()

    def toggle_watch(self) -> None:
        if not self.watching.get():
            self.stop.set()
            self.status.config(text="Stopping the watch after the current batch …")
            return
        folder = self._checked_folder()
        if folder is None or self._busy():
            self.watching.set(False)
            return
        self._begin(f"Watching {folder}: new images are classified as they arrive.")
        model = self.model.get()
        out = self._results(folder)
        self.worker = threading.Thread(target=self._watch, args=(folder, model, out), daemon=True)
        self.worker.start()

    def cancel(self) -> None:
        """Stop a scan after the file in hand; what was classified is written, as on Ctrl-C."""
        if self._busy() and not self.watching.get():
            self.stop.set()
            self.status.config(text="Cancelling: writing what is done …")

    def open_report(self) -> None:
        report = self._results(Path(self.folder.get())) / "report.html"
        if report.is_file():
            webbrowser.open(report.as_uri())

    def close(self) -> None:
        self.stop.set()
        if self.worker is not None:
            self.worker.join(timeout=10)  # a watch saves its last batch
        self.root.destroy()

    # --- work on the worker thread -----------------------------------------------------------

    def _scan(self, folder: Path, model: str, out: Path) -> None:
        from patchscan.discover import discover
        from patchscan.scan import ScanSettings, run_scan

        self.events.put(("total", sum(1 for c in discover([folder]) if not c.skip)))
        csv, json_path, report = _outputs(out)
        settings = ScanSettings((folder,), model=model, csv=csv, json=json_path, report=report)

        def scan() -> None:
            outcome = run_scan(settings, "patchscan (window)", self._on_result, self.stop)
            if outcome.interrupted:
                self.events.put(("cancelled", None))

        self._guarded(scan)

    def _watch(self, folder: Path, model: str, out: Path) -> None:
        from patchscan.watch import Watcher, WatchSettings

        csv, json_path, report = _outputs(out)
        settings = WatchSettings(folder, model=model, csv=csv, json=json_path, report=report)
        self._guarded(
            lambda: Watcher(settings, self.stop, "patchscan (window)", self._on_result).run()
        )

    def _guarded(self, work: Any) -> None:
        try:
            work()
        except PatchscanError as exc:
            self.events.put(("error", str(exc)))
        except OSError as exc:
            self.events.put(("error", f"Cannot read or write {exc.filename}: {exc.strerror}"))
        except Exception as exc:  # the window must say it, not a console nobody sees
            log.exception("unexpected failure")
            self.events.put(("error", f"Unexpected problem: {exc}"))
        self.events.put(("done", None))

    def _on_result(self, result: Result) -> None:
        self.events.put(("result", ("error" if result.error else result.label, result.review)))

    # --- the window's side -------------------------------------------------------------------

    def _poll(self) -> None:
        changed = finished = False
        while True:
            try:
                kind, value = self.events.get_nowait()
            except queue.Empty:
                break
            if kind == "result":
                label, review = value
                self.counts[label] += 1
                self.reviews += review
                changed = True
            elif kind == "total" and value:
                self.progress.stop()
                self.progress.config(mode="determinate", maximum=value, value=0)
            elif kind == "error":
                self.message.config(text=value)
            elif kind == "cancelled":
                self.cancelled = True
            elif kind == "done":
                finished = True
        if changed:
            self.status.config(text=self._count_text())
            if self._determinate():
                self.progress.config(value=self.counts.total())
        if finished:
            self._finish()
        self.root.after(POLL_MS, self._poll)

    def _determinate(self) -> bool:
        """Whether the bar knows its total. (ttk hands the option back as a Tcl object, which
        never equals a str: compared as it came, the bar never moved.)"""
        return str(self.progress.cget("mode")) == "determinate"

    def _begin(self, text: str) -> None:
        self._save_settings()
        self.stop.clear()
        self.counts.clear()
        self.reviews = 0
        self.cancelled = False
        self.message.config(text="")
        self.status.config(text=text)
        self.scan_button.config(state="disabled")
        self.cancel_button.config(state="disabled" if self.watching.get() else "normal")
        self.progress.config(mode="indeterminate", value=0)
        self.progress.start(12)

    def _finish(self) -> None:
        self.progress.stop()
        if self._determinate():
            self.progress.config(value=self.progress["maximum"])
        self.scan_button.config(state="normal")
        self.cancel_button.config(state="disabled")
        self.watching.set(False)
        done = self._count_text() if self.counts else "No images found."
        ended = "Cancelled; the results so far are saved." if self.cancelled else "Done."
        self.status.config(text=f"{ended} {done}")
        self._update_report_button()

    def _count_text(self) -> str:
        total = sum(self.counts.values())
        parts = [f"{n:,} {label}" for label, n in sorted(self.counts.items())]
        review = f"; {self.reviews:,} to review" if self.reviews else ""
        return f"{total:,} files: " + ", ".join(parts) + review

    def _busy(self) -> bool:
        return self.worker is not None and self.worker.is_alive()

    def _checked_folder(self) -> Path | None:
        text = self.folder.get().strip()
        if not text or not Path(text).is_dir():
            self.message.config(text=f"Not a folder: {text or '(none chosen)'}")
            return None
        if not self.model.get():
            self.message.config(text="No model is bundled with this copy of patchscan.")
            return None
        return Path(text)

    def _results(self, folder: Path) -> Path:
        """Where `folder`'s results go: under the chosen results folder (Tk variables are read
        on the window's thread, where this runs)."""
        chosen = self.results_root.get().strip()
        return results_folder(folder, Path(chosen).expanduser() if chosen else None)

    def _describe(self) -> None:
        info = self.models.get(self.model.get())
        self.description.config(text=info.description if info else "")

    def _update_report_button(self) -> None:
        text = self.folder.get().strip()
        exists = bool(text) and (self._results(Path(text)) / "report.html").is_file()
        self.report_button.config(state="normal" if exists else "disabled")

    def _load_settings(self) -> dict[str, str]:
        try:
            return dict(json.loads(settings_file().read_text()))
        except (OSError, ValueError):
            return {}

    def _save_settings(self) -> None:
        path = settings_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            remembered = {
                "folder": self.folder.get(),
                "model": self.model.get(),
                "results": self.results_root.get(),
            }
            path.write_text(json.dumps(remembered))
        except OSError as exc:
            log.warning("cannot remember the folder: %s", exc)


def main() -> None:
    root = new_root()
    App(root)
    root.lift()
    root.focus_force()
    root.mainloop()
