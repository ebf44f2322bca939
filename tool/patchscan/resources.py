"""The files that ship inside the patchscan package: the models with their cards, and the icon.

They are found with importlib.resources, so one lookup serves a checkout installed editable, a
wheel in site-packages and the PyInstaller bundle (whose importer serves the package's files from
sys._MEIPASS/patchscan, where build/patchscan.spec puts them) — never a path guessed from this
file's place in a source tree.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def package_folder(name: str) -> Path:
    """A data folder inside the package, as a real path.

    onnxruntime and Tk open files by name, so a folder inside a zip would be of no use to them;
    every way patchscan is installed puts the package on disk, and anything else is a bug.
    """
    folder = resources.files("patchscan") / name
    if not isinstance(folder, Path):
        raise RuntimeError(f"patchscan/{name} is not a folder on disk: {folder!r}")
    return folder


def bundled_models_dir() -> Path:
    return package_folder("models")


def icon_path() -> Path:
    """The window's icon (PNG: Tk on every platform reads it; the .ico is for PyInstaller)."""
    return package_folder("icons") / "patchscan.png"
