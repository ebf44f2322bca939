"""Where the bundled assets live: inside a PyInstaller bundle, or in the source checkout."""

from __future__ import annotations

import sys
from pathlib import Path


def assets_dir() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "assets"
    return Path(__file__).resolve().parents[2] / "assets"


def bundled_models_dir() -> Path:
    return assets_dir() / "models"
