"""`make bench`: patchscan against the decode-only floor and the seed-style Keras pipeline.

Everything runs in one process tree on the same files, in one run, so the ratios are fair on a
shared machine. Needs ../shared/data/idc (skips cleanly without it) and, for the Keras row,
TensorFlow and bench/idc.keras (the Keras twin of the bundled idc.onnx, saved by the trainer);
the skin rows need ../shared/data/skin and the trainer.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from patchscan.imaging import load_rgb
from patchscan.model import Model, Session, resolve_model
from patchscan.pipeline import batch_size_for

ROOT = Path(__file__).resolve().parents[1]
IDC = ROOT.parent / "shared" / "data" / "idc"
SKIN = ROOT.parent / "shared" / "data" / "skin"
SKIN_PHOTOS = 600
KERAS_MODEL = ROOT / "bench" / "idc.keras"
PATCHSCAN = [sys.executable, "-m", "patchscan"]
ROUNDS = 3  # of the floor and the scan, alternating
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in these


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=IDC)
    parser.add_argument("--skip-memory", action="store_true", help="no 20k/100k RSS runs")
    parser.add_argument("--skip-watch", action="store_true")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"bench: {args.data} not found; skipped (it needs the IDC patches)")
        return 0
    files = sorted(args.data.rglob("*.png"))
    cores = os.cpu_count() or 1
    print(f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}")
    print(f"files: {len(files):,} IDC patches under {args.data}\n")
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="patchscan-bench-") as tmp:
        work = Path(tmp)
        floor, limit, scan, ratios = floor_and_scan(files, cores, args.data, work / "a.csv")
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}x in {ROUNDS} rounds"
        rows.append(("1. decode floor (PIL, all cores)", rate(len(files), floor), "1.00x floor"))
        own = timed(lambda: decode_floor(files, cores, _decode_as_patchscan))
        rows.append(
            ("   patchscan's own decode, all cores", rate(len(files), own), f"{floor / own:.2f}x")
        )
        rows.append(
            (
                "   own decode + the model, nothing else",
                rate(len(files), limit),
                f"{floor / limit:.2f}x floor: the most a scan could do",
            )
        )
        rows.append(
            (
                "2. patchscan scan (CSV)",
                rate(len(files), scan.seconds),
                f"{floor / scan.seconds:.2f}x floor ({spread})",
            )
        )
        seed = seed_style(files)
        if seed is not None:
            rows.append(
                (
                    "3. seed style: PIL → array → Keras predict",
                    rate(len(files), seed.seconds),
                    f"scan is {seed.seconds / scan.seconds:.1f}x faster",
                )
            )
        # The median of 3: one in a few waits ~0.2 s on the disk here with the same CPU time.
        rescan = statistics.median(
            run_measured(
                [*PATCHSCAN, "scan", str(args.data), "--csv", str(work / "a.csv"), "-q"]
            ).seconds
            for _ in range(ROUNDS)
        )
        rows.append(
            (
                "4. unchanged rescan, median of 3",
                f"{rescan:.2f} s",
                f"{rescan / floor:.2f}x floor time",
            )
        )
        rows.append(("   peak RSS of the scan (2.)", f"{scan.peak_mb:.0f} MB", ""))
        if not args.skip_memory:
            for count in (20_000, 100_000):
                folder = repeated(files, count, work / f"m{count}")
                run = run_measured(
                    [*PATCHSCAN, "scan", str(folder), "--csv", str(work / f"m{count}.csv"), "-q"]
                )
                rows.append(
                    (
                        f"5. peak RSS, {count:,} files",
                        f"{run.peak_mb:.0f} MB",
                        rate(count, run.seconds),
                    )
                )
                shutil.rmtree(folder)
        if not args.skip_watch:
            p50, p95, idle = watch_latency(files[:200], work)
            rows.append(("6. watch: landed → CSV row", f"p50 {p50:.2f} s", f"p95 {p95:.2f} s"))
            rows.append(("   watch: idle CPU", f"{idle:.2f}% of a core", ""))
        rows += skin_rows(work)
        cpu = profile(files, scan)
        rows += profile_rows(cpu)
        if seed is not None:
            rows += keras_bound_rows(seed, cpu, len(files), cores)
    width = max(len(r[0]) for r in rows)
    for name, figure, ratio in rows:
        print(f"{name:<{width}}  {figure:>22}  {ratio}")
    return 0


@dataclass
class Profile:
    """The scan's CPU per file in µs: by process, and the workers' two stages timed alone."""

    main: float  # walk, books, CSV, store, slide context
    workers: float  # start-up included
    decode: float
    model: float

    @property
    def rest(self) -> float:
        return self.workers - self.decode - self.model


def profile(files: list[Path], scan: Measured) -> Profile:
    """Row 2's CPU by process, and decode and the model on the scan's batches each timed alone
    on one core: a profile, not a guess."""
    sample = files[:: max(1, len(files) // 4000)]
    session = Session(Model.open(resolve_model("idc")), threads=1)
    started = time.process_time()
    pixels = [load_rgb(path, session.info.input_size) for path in sample]
    decode = time.process_time() - started
    started = time.process_time()
    _classify_as_the_scan(session, pixels)
    model = time.process_time() - started
    per_file = 1e6 / len(files)
    per_sample = 1e6 / len(sample)
    return Profile(
        scan.main_cpu * per_file,
        scan.workers_cpu * per_file,
        decode * per_sample,
        model * per_sample,
    )


def profile_rows(cpu: Profile) -> list[tuple[str, str, str]]:
    return [
        ("where the scan's CPU goes, per file", "", ""),
        ("   main process: walk, books, CSV", f"{cpu.main:.0f} µs", ""),
        ("   workers, start-up included", f"{cpu.workers:.0f} µs", ""),
        ("     decode (timed alone)", f"{cpu.decode:.0f} µs", ""),
        ("     model, onnxruntime (timed alone)", f"{cpu.model:.0f} µs", ""),
        ("     the rest: start-up, pickling, names", f"{cpu.rest:.0f} µs", ""),
    ]


def keras_bound_rows(
    seed: SeedStyle, cpu: Profile, count: int, cores: int
) -> list[tuple[str, str, str]]:
    """How far ahead of the Keras way any model could put the scan on this machine.

    A model k times cheaper than this one shrinks the model's part of Keras' predict (beyond
    what predict costs with a model of next to nothing) and the scan's model stage alike; the
    Keras way's import, load, one-core decode and predict overhead stay, and so do the scan's
    decode and bookkeeping. The scan needs (decode + bookkeeping + model / k) of CPU per file
    spread over the cores, so its lead lies between its two ends: a free model (k → ∞) and an
    endlessly costly one (k → 0). Printed with today's bookkeeping and with none at all.
    """
    spread = count / cores / 1e6  # µs of CPU per file → seconds of wall on all cores
    fixed = seed.load + seed.decode + seed.overhead
    costly_model = (seed.predict - seed.overhead) / (cpu.model * spread)

    def best(bookkeeping: float) -> str:
        free_model = fixed / ((cpu.decode + bookkeeping) * spread)
        return f"≤ {max(free_model, costly_model):.1f}x"

    return [
        (
            "   Keras way by phase",
            f"{seed.load:.1f} + {seed.decode:.1f} + {seed.predict:.1f} s",
            f"import and load + decode on one core + predict ({seed.overhead:.1f} s of it "
            "with a model of next to nothing)",
        ),
        (
            "   lead over Keras any model could give",
            best(cpu.main + cpu.rest),
            f"with today's bookkeeping ({cpu.main + cpu.rest:.0f} µs); {best(0)} with none",
        ),
    ]


def floor_and_scan(
    files: list[Path], cores: int, folder: Path, csv_path: Path
) -> tuple[float, float, Measured, list[float]]:
    """The floor, the limit and the scan, alternating for ROUNDS rounds (the scan redoing
    everything with --force): the medians of each, and each round's scan/floor speed ratio. On
    a shared machine one run of each can be 1.5x off; alternating spreads the neighbours' load
    over all three."""
    floors, limits, scans = [], [], []
    for _ in range(ROUNDS):
        floors.append(timed(lambda: decode_floor(files, cores)))
        limits.append(timed(lambda: decode_floor(files, cores, _decode_and_classify)))
        scans.append(
            run_measured([*PATCHSCAN, "scan", str(folder), "--csv", str(csv_path), "-q", "--force"])
        )
    ratios = [f / s.seconds for f, s in zip(floors, scans, strict=True)]
    middle = sorted(scans, key=lambda s: s.seconds)[ROUNDS // 2]
    return statistics.median(floors), statistics.median(limits), middle, ratios


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} files/s ({seconds:.1f} s)"


def _decode(paths: list[Path]) -> int:
    for path in paths:
        with Image.open(path) as image:
            np.asarray(image.convert("RGB"))
    return len(paths)


def _decode_as_patchscan(paths: list[Path]) -> int:
    """The scan's decoder alone (libspng for the patches, not PIL): for comparison."""
    for path in paths:
        load_rgb(path, (50, 50))
    return len(paths)


_session: Session | None = None  # in a pool process: the model, loaded once


def _decode_and_classify(paths: list[Path]) -> int:
    """The scan's two irreducible stages and nothing else: the scan's decoder and the bundled
    idc model in batches as the scan's workers run it, no names, no results, no CSV. No scan
    with this model and decoder can beat this on the same cores: the limit for row 2."""
    global _session
    if _session is None:
        _session = Session(Model.open(resolve_model("idc")), threads=1)
    _classify_as_the_scan(_session, [load_rgb(path, _session.info.input_size) for path in paths])
    return len(paths)


def _classify_as_the_scan(session: Session, pixels: list[np.ndarray]) -> None:
    """Decoded images through the model in the scan's worker tasks (pipeline.batch_size_for)."""
    batch = batch_size_for(session.info)
    for index in range(0, len(pixels), batch):
        session.predict(np.stack(pixels[index : index + batch]))


def decode_floor(
    files: list[Path], cores: int, decode: Callable[[list[Path]], int] = _decode
) -> None:
    chunks = [files[i : i + 500] for i in range(0, len(files), 500)]
    with ProcessPoolExecutor(cores) as pool:
        assert sum(pool.map(decode, chunks)) == len(files)


@dataclass
class Measured:
    seconds: float  # wall
    peak_mb: float  # peak RSS of the whole process tree
    main_cpu: float  # CPU seconds of the main process
    workers_cpu: float  # CPU seconds of its children (the workers), start-up included


def run_measured(command: list[str]) -> Measured:
    """Wall time, peak RSS and CPU time of the whole process tree, sampled every 20 ms."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    peak = 0
    cpu: dict[int, float] = {}  # pid → CPU seconds when last seen
    while process.poll() is None:
        peak = max(peak, sample_tree(process.pid, cpu))
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    if process.returncode not in (0, 1):
        raise SystemExit(f"bench: {' '.join(command)} exited {process.returncode}")
    main_cpu = cpu.pop(process.pid, 0.0)
    return Measured(seconds, peak / 1e6, main_cpu, sum(cpu.values()))


def sample_tree(pid: int, cpu: dict[int, float]) -> int:
    """One look at `pid` and its descendants: their total RSS is returned, and each one's CPU
    seconds so far are recorded in `cpu` (a process's last sample outlives its exit)."""
    total = 0
    for member in (pid, *children(pid)):
        try:
            status = Path(f"/proc/{member}/status").read_text()
            stat = Path(f"/proc/{member}/stat").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        fields = stat.rsplit(")", 1)[1].split()
        cpu[member] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
    return total


def children(pid: int) -> Iterator[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return
    for task in tasks:
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            yield int(kid)
            yield from children(int(kid))


def skin_rows(work: Path) -> list[tuple[str, str, str]]:
    """600 dermoscopy photos: the scan with the bundled 8-view skin model, and the Keras way on
    the same network (the trainer's 8-view EfficientNet-Lite2, built with ImageNet weights and a
    new head: what it computes costs the same whatever its weights). Skipped without the photos
    or the trainer."""
    photos = sorted(SKIN.rglob("*.jpg"))
    if len(photos) < SKIN_PHOTOS:
        print(f"bench: {SKIN} has fewer than {SKIN_PHOTOS} photos; skin rows skipped")
        return []
    folder = work / "skin"
    folder.mkdir()
    for photo in photos[:: len(photos) // SKIN_PHOTOS][:SKIN_PHOTOS]:
        shutil.copy(photo, folder / photo.name)
    scan = run_measured(
        [*PATCHSCAN, "scan", str(folder), "-m", "skin", "--csv", str(work / "s.csv"), "-q"]
    )
    rows = [
        (
            f"7. skin: patchscan scan, {SKIN_PHOTOS} photos",
            rate(SKIN_PHOTOS, scan.seconds),
            f"peak RSS {scan.peak_mb:.0f} MB",
        )
    ]
    code = (
        "import sys, time, numpy as np; from PIL import Image; t = [time.perf_counter()];"
        "from patchscan_train import nets;"
        "m = nets.averaged_over_dihedral_views(nets.skin_efficientnet((160, 160)));"
        "t.append(time.perf_counter()); from pathlib import Path;"
        "paths = sorted(Path(sys.argv[1]).glob('*.jpg'));"
        "x = np.array([np.asarray(Image.open(p).convert('RGB').resize((160, 160))) for p in paths]);"
        "x = x.astype('float32') / 255.0; t.append(time.perf_counter());"
        "p = m.predict(x, verbose=0); t.append(time.perf_counter()); print(*np.diff(t))"
    )
    timings = keras_timings("skin Keras run", code, str(folder))
    if timings is None:
        return rows
    load, decode, predict = timings
    keras_seconds = load + decode + predict
    rows.append(
        (
            "   skin: Keras way, same 8-view network",
            rate(SKIN_PHOTOS, keras_seconds),
            f"scan is {keras_seconds / scan.seconds:.1f}x faster "
            f"({load:.1f} + {decode:.1f} + {predict:.1f} s: build, decode, predict)",
        )
    )
    return rows


@dataclass
class SeedStyle:
    """The notebook way's wall time by phase."""

    load: float  # importing Keras and loading the model
    decode: float  # PIL on one core, into one float array
    predict: float  # Keras predict (it uses every core)
    overhead: float  # Keras predict with a model that costs next to nothing: not in `seconds`

    @property
    def seconds(self) -> float:
        return self.load + self.decode + self.predict


def seed_style(files: list[Path]) -> SeedStyle | None:
    """The notebook way: every image into one array, then Keras predict. Skipped without TF."""
    if not KERAS_MODEL.is_file():
        print(f"bench: {KERAS_MODEL} missing; seed-style row skipped (make train-idc writes it)")
        return None
    code = (
        "import sys, time, numpy as np; from PIL import Image; t = [time.perf_counter()];"
        "import keras; m = keras.models.load_model(sys.argv[1]); t.append(time.perf_counter());"
        "paths = open(sys.argv[2]).read().split('\\n');"
        "x = np.array([np.asarray(Image.open(p).convert('RGB').resize((50, 50))) for p in paths]);"
        "x = x.astype('float32') / 255.0; t.append(time.perf_counter());"
        "p = m.predict(x, verbose=0); t.append(time.perf_counter());"
        "L = keras.layers; m = keras.Sequential([keras.Input(x.shape[1:]),"
        " L.GlobalAveragePooling2D(), L.Dense(1, activation='sigmoid')]);"
        "p = m.predict(x, verbose=0); t.append(time.perf_counter());"
        "print(*np.diff(t))"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(map(str, files)))
    try:
        timings = keras_timings("seed-style run", code, str(KERAS_MODEL), listing.name)
    finally:
        os.unlink(listing.name)
    return None if timings is None else SeedStyle(*timings)


def keras_timings(what: str, code: str, *args: str) -> list[float] | None:
    """Run a Keras way's `code` in a Python of its own (the bench's own process never imports
    TensorFlow): the phase timings it prints last, or None, said why, if it failed."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if result.returncode != 0:
        print(f"bench: {what} failed ({result.stderr.strip().splitlines()[-1:]})")
        return None
    return [float(value) for value in result.stdout.strip().splitlines()[-1].split()]


def repeated(files: list[Path], count: int, folder: Path) -> Path:
    """`count` real patches under new names (hard links: no extra disk), 28 patients per copy."""
    for index in range(count):
        source = files[index % len(files)]
        copy = index // len(files)
        target = folder / f"{source.parts[-3]}r{copy}" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy(source, target)
    return folder


def watch_latency(sources: list[Path], work: Path) -> tuple[float, float, float]:
    """Drop files one by one (rename into place) and time until each has its CSV row."""
    folder, out = work / "lab", work / "lab-out"
    folder.mkdir()
    out.mkdir()
    csv_path = out / "r.csv"
    process = subprocess.Popen(
        [*PATCHSCAN, "watch", str(folder), "--csv", str(csv_path), "-q"],
        stderr=subprocess.DEVNULL,
    )
    landed: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def follow() -> None:
        while not stop.is_set():
            if csv_path.exists():
                with open(csv_path, newline="") as handle:
                    for row in csv.DictReader(handle):
                        seen.setdefault(row["path"], time.perf_counter())
            time.sleep(0.01)

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        time.sleep(3)  # start-up is not latency
        for index, source in enumerate(sources):
            target = folder / f"p{index:04d}_x{index * 50}_y0.png"
            part = target.with_name(target.name + ".part")
            shutil.copy(source, part)
            part.rename(target)
            landed[str(target)] = time.perf_counter()
            time.sleep(0.05)
        deadline = time.perf_counter() + 30
        while len(seen) < len(sources) and time.perf_counter() < deadline:
            time.sleep(0.1)
        idle = idle_cpu(process.pid, seconds=10)
    finally:
        stop.set()
        follower.join()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    latencies = sorted(seen[path] - landed[path] for path in landed if path in seen)
    if len(latencies) < len(sources):
        print(f"bench: watch missed {len(sources) - len(latencies)} files")
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    return statistics.median(latencies), p95, idle


def idle_cpu(pid: int, seconds: float) -> float:
    """CPU use of the watch's whole process tree (workers included), % of one core."""
    before: dict[int, float] = {}
    after: dict[int, float] = {}
    sample_tree(pid, before)
    time.sleep(seconds)
    sample_tree(pid, after)
    spent = sum(after[member] - before.get(member, 0.0) for member in after)
    return 100 * spent / seconds


if __name__ == "__main__":
    sys.exit(main())
