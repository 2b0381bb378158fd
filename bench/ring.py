"""The any-length run on a ring stream: peak RSS per process, ring space, pipeline rate.

    python bench/ring.py                           # --num_samples 1e10 --detector zscore
    python bench/ring.py --n 1e9 -- --ring 512MiB  # after --: more single_machine.py options

Runs exactly ``single_machine.py --num_samples N --detector zscore --quiet --time`` (its
stream is a ring in a new temporary directory, in ``/dev/shm`` when that has room) and,
while it runs, samples every 0.2 s the bytes allocated under that directory: the ring's
data file, and everything (ring, sidecar, cursors, labels, outputs, metrics).  Prints the
figures of the issue's goals (peak RSS <= 400 MB per process, ring space <= its
configured size, pipeline >= 150 M samples/s) and one JSON line.  A 1e10 run takes one
to two minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACES = [Path("/dev/shm"), Path(tempfile.gettempdir())]


def _runs_dirs() -> set[Path]:
    out: set[Path] = set()
    for place in PLACES:
        try:
            out |= set(place.glob("tsstream-*"))
        except OSError:
            pass
    return out


def _allocated(directory: Path) -> tuple[int, int]:
    """(bytes allocated to the ring's data file, to every file in ``directory``)."""
    ring = total = 0
    try:
        for p in directory.rglob("*"):
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            if p.is_file():
                total += st.st_blocks * 512
                if p.name == "stream.npy":
                    ring = st.st_blocks * 512
    except FileNotFoundError:
        pass
    return ring, total


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=float, default=1e10, help="samples (default 1e10)")
    args = p.parse_args(argv)
    n = int(args.n)
    cmd = [sys.executable, str(ROOT / "single_machine.py"), "--num_samples", str(n)]
    cmd += ["--detector", "zscore", "--quiet", "--time", *extra]
    before = _runs_dirs()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    run_dir: Path | None = None
    peak_ring = peak_all = 0
    while proc.poll() is None:
        if run_dir is None:
            new = _runs_dirs() - before
            run_dir = next(iter(new), None)
        if run_dir is not None:
            ring, total = _allocated(run_dir)
            peak_ring, peak_all = max(peak_ring, ring), max(peak_all, total)
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(err)
        return proc.returncode
    fig = json.loads(out.strip().splitlines()[-1])
    configured = fig.get("ring_bytes") or 0
    result = {
        "samples": n,
        "command": " ".join(["python", "single_machine.py", *cmd[2:]]),
        "stream": fig.get("stream"),
        "ring_bytes_configured": configured,
        "ring_bytes_peak": peak_ring,
        "run_dir_bytes_peak": peak_all,
        "producer_peak_rss_bytes": fig["producer"]["peak_rss_bytes"],
        "consumer_peak_rss_bytes": fig["consumer"]["peak_rss_bytes"],
        "pipeline_seconds": fig["pipeline_seconds"],
        "pipeline_samples_per_s": fig["pipeline_samples_per_s"],
        "wall_seconds": fig["wall_seconds"],
        "wall_samples_per_s": fig["wall_samples_per_s"],
        "bench_seconds": round(wall, 2),
        "anomalies": fig["consumer"].get("anomalies"),
        "recall": fig["consumer"].get("recall"),
        "precision": fig["consumer"].get("precision"),
    }
    mb = 1e6
    print(f"{n:.3g} samples through a ring at {result['stream']}")
    print(
        f"  peak RSS: producer {result['producer_peak_rss_bytes'] / mb:.0f} MB, "
        f"consumer {result['consumer_peak_rss_bytes'] / mb:.0f} MB (goal <= 400 MB each)"
    )
    print(
        f"  ring space: at most {peak_ring / mb:.1f} MB allocated of {configured / mb:.1f} MB "
        f"configured; the whole run directory at most {peak_all / mb:.1f} MB"
    )
    print(
        f"  pipeline: {result['pipeline_seconds']:.1f} s = "
        f"{result['pipeline_samples_per_s'] / 1e6:.1f} M samples/s (goal >= 150); wall clock "
        f"{result['wall_seconds']:.1f} s = {result['wall_samples_per_s'] / 1e6:.1f} M samples/s"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
