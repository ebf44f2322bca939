"""The runtime wheel, built and installed away from the checkout: what a user of `pip install`
gets. It must hold the models, their cards and the icon, and neither the trainer nor the tests,
and the installed tool must find its models with no source tree anywhere near it.

How, in well under a minute and with no network:
- The wheel is built from a copy of the checkout's files (those git tracks or would track), so a
  stale build/lib in the checkout cannot leak into it and nothing is written into the checkout;
  the copy keeps trainer/ and tests/, so "not in the wheel" is a real check of the packaging.
  pip builds it as a user's pip would: in an isolated environment with the setuptools that
  pyproject.toml asks for (here from the local package index).
- The venv is made without pip and without --system-site-packages; the wheel is installed into its
  site-packages with `pip install --no-deps --target`. The runtime's dependencies (onnxruntime,
  numpy, ...) come from this test's own environment, through a .pth file that names its
  site-packages: installing them afresh would take minutes. A .pth line only adds a folder to
  sys.path, the .pth files inside it are not read, so the checkout's editable install does not
  come along; the venv's own site-packages comes first, so `import patchscan` is the wheel's, and
  the test asserts so.
"""

from __future__ import annotations

import csv
import email
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES

SKIN_SAMPLES = ROOT / "assets" / "samples" / "skin"
SHIPPED = [
    "patchscan/models/idc.onnx",
    "patchscan/models/idc.md",
    "patchscan/models/skin.onnx",
    "patchscan/models/skin.md",
    "patchscan/icons/patchscan.png",
]


def _run(args: list[str | Path], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run with no PYTHONPATH: only the venv decides what imports."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _copy_of_checkout(to: Path) -> Path:
    """The checkout's tracked and trackable files, as they are on disk now."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the wheel test copies the files git knows")
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted but not yet committed is still listed
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    return to


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = _copy_of_checkout(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, "."], source)
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("patchscan-*.whl")
    return path


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding the wheel, and borrowing only the runtime's dependencies from this one."""
    root = tmp_path_factory.mktemp("venv")
    made = _run([sys.executable, "-m", "venv", "--without-pip", root], root)
    assert made.returncode == 0, made.stderr
    python = root / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([python, "-c", code], root).stdout.strip())
    args = ["-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", site, wheel]
    installed = _run([sys.executable, *args], root)
    assert installed.returncode == 0, installed.stderr
    ours = {sysconfig.get_paths()[kind] for kind in ("purelib", "platlib")}
    (site / "borrowed-dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return root


@pytest.fixture
def away(tmp_path: Path) -> Path:
    """A working folder outside the checkout: nothing of the source tree on sys.path."""
    assert not tmp_path.resolve().is_relative_to(ROOT)
    return tmp_path


def test_wheel_holds_the_runtime_with_its_models_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert set(SHIPPED) <= set(names)
    top = {name.split("/")[0] for name in names}
    assert top == {"patchscan", wheel.name.split("-py3")[0] + ".dist-info"}, top
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA")))
    requires = email.message_from_bytes(metadata).get_all("Requires-Dist") or []
    assert not [r for r in requires if "tensorflow" in r or "tf2onnx" in r]  # the trainer's


def test_installed_patchscan_is_the_wheel_not_the_checkout(venv: Path, away: Path) -> None:
    code = "import patchscan.model as m; print(m.__file__); print(m.bundled_models()['idc'])"
    result = _run([venv / "bin" / "python", "-c", code], away)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        assert Path(line).resolve().is_relative_to(venv.resolve()), line


def test_installed_patchscan_lists_its_models(venv: Path, away: Path) -> None:
    result = _run([venv / "bin" / "python", "-m", "patchscan", "models"], away)
    assert result.returncode == 0, result.stderr
    assert sorted(line.split("\t")[0] for line in result.stdout.splitlines()) == ["idc", "skin"]


def _a_few(samples: Path, pattern: str, to: Path, per_folder: int = 3) -> int:
    """Copy the first few files of each leaf folder, keeping the layout (the labels live in it)."""
    copied = 0
    for folder in sorted({p.parent for p in samples.rglob(pattern)}):
        for path in sorted(folder.glob(pattern))[:per_folder]:
            target = to / path.relative_to(samples)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied += 1
    return copied


@pytest.mark.parametrize(
    ("model", "samples", "pattern"), [("idc", SAMPLES, "*.png"), ("skin", SKIN_SAMPLES, "*.jpg")]
)
def test_installed_patchscan_scans_with_its_bundled_model(
    venv: Path, away: Path, model: str, samples: Path, pattern: str
) -> None:
    count = _a_few(samples, pattern, away / "images")
    args = ["-m", "patchscan", "scan", "images", "--model", model, "--csv", "out.csv", "--quiet"]
    result = _run([venv / "bin" / "python", *args], away, timeout=300)
    assert result.returncode == 0, result.stderr
    with open(away / "out.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert count > 0 and len(rows) == count
