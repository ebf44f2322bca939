import subprocess
import sys
from pathlib import Path


def test_a_scan_never_imports_tensorflow(patches: Path, tiny_model: Path, tmp_path: Path) -> None:
    code = f"""
import sys
from pathlib import Path
from patchscan.scan import ScanSettings, run_scan
outcome = run_scan(ScanSettings(paths=(Path({str(patches)!r}),), model={str(tiny_model)!r},
                                csv=Path({str(tmp_path / "r.csv")!r}),
                                report=Path({str(tmp_path / "r.html")!r})), "test")
assert outcome.classified > 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "patchscan_train"))
print(heavy)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_help_imports_nothing_heavy() -> None:
    code = "import sys; from patchscan.cli import main; print('onnxruntime' in sys.modules, 'PIL' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False False"
