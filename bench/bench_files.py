#!/usr/bin/env python3
"""File mirroring benchmark: the File Monitor / FileMirror pair side by side with lsyncd and rsync.

One run, on this machine, on the same kind of data:

* **latency**: ``--changes`` new small files written at ``--rate`` changes/s into a mirrored directory;
  for each, the time from its close on the source to its appearance (rename into place) on the
  destination, seen by an inotify watch on the destination directory. p50 / p99 / max.
  Compared: switchover (a real local pair, A active, B backup, per-node ``[mirror] root``) and lsyncd
  (``default.rsync`` backend, ``delay = 0``, its smallest; the Debian default is 15 s).
* **initial sync**: ``--files`` files of 4 KiB present before the backup starts; from the start of the
  backup's comparison to the last file in place (``sync_seconds`` of ``files.status``, and the wall
  time from starting the backup process). Compared: ``rsync -a -W`` of the same tree, and lsyncd's
  start-up (its initial full rsync).
* **1 GiB file**: the time from the close of a ``--big-mib`` MiB file to the whole file in place on the
  destination; throughput in MiB/s. Compared: ``rsync -a -W`` of the file and lsyncd.

Each system runs alone in its phase (the others idle). Needs ``rsync`` and ``lsyncd``; it installs
them with ``deploy/install-system-deps.sh`` when missing.

    python bench/bench_files.py [--changes 500] [--rate 100] [--files 10000] [--big-mib 1024] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inotify_simple import INotify, flags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy.pair import LocalPair, wait_until

REPO = Path(__file__).resolve().parent.parent
ACTIVE, BACKUP = "alpha", "beta"


def ensure_tools() -> None:
    if shutil.which("rsync") and shutil.which("lsyncd"):
        return
    print("installing rsync and lsyncd with deploy/install-system-deps.sh ...", flush=True)
    subprocess.run(["bash", str(REPO / "deploy/install-system-deps.sh")], check=True)


class Arrivals:
    """An inotify watch on a destination directory: when each name was renamed into place (or closed),
    optionally only once it has the expected size."""

    def __init__(self, directory: Path, size: int | None = None) -> None:
        self.directory = directory
        self.size = size
        self.times: dict[str, float] = {}
        self.ino = INotify()
        self.ino.add_watch(str(directory), flags.MOVED_TO | flags.CLOSE_WRITE)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for ev in self.ino.read(timeout=100):
                now = time.monotonic()
                if not ev.name or ev.name.startswith(".") or ev.name in self.times:
                    continue
                if self.size is not None:
                    try:
                        if (self.directory / ev.name).stat().st_size != self.size:
                            continue
                    except OSError:
                        continue
                self.times[ev.name] = now

    def has(self, name: str) -> Callable[[], bool]:
        return lambda: name in self.times

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.ino.close()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def write_small(path: Path, data: bytes) -> float:
    with open(path, "wb") as f:
        f.write(data)
    return time.monotonic()


def latency_run(src: Path, dst: Path, changes: int, rate: float, timeout: float) -> dict[str, Any]:
    arrivals = Arrivals(dst)
    written: dict[str, float] = {}
    start = time.monotonic()
    try:
        for i in range(changes):
            due = start + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the writer at the target rate (a benchmark, not a test)
            name = f"c{i:06d}.dat"
            written[name] = write_small(src / name, b"x" * 100)
        deadline = time.monotonic() + timeout
        while len(arrivals.times) < changes and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        arrivals.close()
    lat = [(arrivals.times[n] - t) * 1000 for n, t in written.items() if n in arrivals.times]
    out: dict[str, Any] = {"changes": changes, "arrived": len(lat)}
    if lat:
        out.update(p50_ms=pct(lat, 50), p99_ms=pct(lat, 99), max_ms=max(lat), mean_ms=statistics.fmean(lat))
    return out


def make_small_files(top: Path, count: int) -> None:
    top.mkdir(parents=True, exist_ok=True)
    block = os.urandom(4096)
    for i in range(count):
        d = top / f"d{i // 1000:02d}"
        d.mkdir(exist_ok=True)
        (d / f"f{i:05d}.dat").write_bytes(block[: 4096 - 8] + i.to_bytes(8, "little"))


def count_files(top: Path) -> int:
    n = 0
    for _root, _dirs, files in os.walk(top):
        n += sum(1 for f in files if not f.startswith("."))
    return n


def write_big(path: Path, mib: int) -> float:
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(block)
    return time.monotonic()


def lsyncd_config(base: Path, pairs: list[tuple[Path, Path]]) -> Path:
    lines = [
        "settings {",
        f'  logfile = "{base}/lsyncd.log",',
        f'  statusFile = "{base}/lsyncd.status",',
        "  nodaemon = true,",
        "}",
    ]
    for src, dst in pairs:
        lines += [
            "sync {",
            "  default.rsync,",
            f'  source = "{src}",',
            f'  target = "{dst}",',
            "  delay = 0,",
            "  rsync = { whole_file = true },",
            "}",
        ]
    cfg = base / "lsyncd.conf.lua"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def start_pair(base: Path) -> tuple[LocalPair, Path, Path]:
    params = {
        "CustomMirrorDir": "+/bulk; +/lat; +/big",
        "Switchover File Monitor Health Check Interval": "60",
    }
    pair = LocalPair(base / "pair", parameters=params, extra={"timing": {"startup_wait": 1.0}})
    roots = {}
    for name, node in pair.nodes.items():
        root = base / f"root-{name}"
        root.mkdir()
        roots[name] = root
        node.config.write_text(node.config.read_text() + f'\n[mirror]\nroot = "{root}"\n')
    return pair, roots[ACTIVE], roots[BACKUP]


def files_status(pair: LocalPair) -> dict[str, Any]:
    return pair.admin(BACKUP, "files.status")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=500)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--keep", help="keep the work directory here")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()
    ensure_tools()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-files-"))
    base.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs", "args": vars(args)}
    pair, a_root, b_root = start_pair(base)
    lsrc, ldst, rdst = base / "lsyncd-src", base / "lsyncd-dst", base / "rsync-dst"
    lsyncd: subprocess.Popen[bytes] | None = None
    rdst.mkdir(parents=True)
    try:
        # ------------------------------------------------------------------ initial sync
        for d in ("bulk", "lat", "big"):
            (a_root / d).mkdir()
            (lsrc / d).mkdir(parents=True)
            (ldst / d).mkdir(parents=True)
        make_small_files(a_root / "bulk", args.files)
        shutil.copytree(a_root / "bulk", lsrc / "bulk", dirs_exist_ok=True)
        os.sync()
        pair.start_node(ACTIVE, "--manual-switch-only")
        wait_until(lambda: pair.role(ACTIVE) == "Primary", 30, what="alpha Primary")
        t0 = time.monotonic()
        pair.start_node(BACKUP, "--manual-switch-only")
        wait_until(lambda: count_files(b_root / "bulk") >= args.files, 600, 0.05, "initial sync")
        wall = time.monotonic() - t0
        wait_until(lambda: files_status(pair)["state"] == "running", 60, what="replication running")
        bulk = next(r for r in files_status(pair)["roots"] if r["root"] == "/bulk")
        results["initial_sync"] = {
            "switchover_sync_s": bulk["sync_seconds"],
            "switchover_wall_from_backup_start_s": wall,
        }
        t = time.monotonic()
        subprocess.run(["rsync", "-a", "-W", f"{a_root / 'bulk'}/", f"{rdst / 'bulk'}/"], check=True)
        results["initial_sync"]["rsync_W_s"] = time.monotonic() - t
        cfg = lsyncd_config(base, [(lsrc / d, ldst / d) for d in ("bulk", "lat", "big")])
        t = time.monotonic()
        lsyncd = subprocess.Popen(
            ["lsyncd", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_until(lambda: count_files(ldst / "bulk") >= args.files, 600, 0.05, "lsyncd initial sync")
        results["initial_sync"]["lsyncd_startup_s"] = time.monotonic() - t
        print(json.dumps({"initial_sync": results["initial_sync"]}), flush=True)

        # --------------------------------------------------------------------- latency
        (b_root / "lat").mkdir(exist_ok=True)
        wait_until(lambda: (ldst / "lat").is_dir(), 30, what="lsyncd lat dir")
        results["latency"] = {
            "switchover": latency_run(a_root / "lat", b_root / "lat", args.changes, args.rate, 60),
            "lsyncd_delay0": latency_run(lsrc / "lat", ldst / "lat", args.changes, args.rate, 120),
        }
        print(json.dumps({"latency": results["latency"]}), flush=True)

        # ------------------------------------------------------------------- 1 GiB file
        size = args.big_mib * 1024 * 1024
        (b_root / "big").mkdir(exist_ok=True)
        big: dict[str, Any] = {"mib": args.big_mib}
        for label, src, dst in (("switchover", a_root, b_root), ("lsyncd_delay0", lsrc, ldst)):
            arrivals = Arrivals(dst / "big", size=size)
            try:
                closed = write_big(src / "big" / "big.bin", args.big_mib)
                wait_until(arrivals.has("big.bin"), 600, 0.05, f"{label} big file")
                secs = arrivals.times["big.bin"] - closed
            finally:
                arrivals.close()
            big[f"{label}_s"] = secs
            big[f"{label}_MiB_per_s"] = args.big_mib / secs
        t = time.monotonic()
        (rdst / "big").mkdir(parents=True, exist_ok=True)
        subprocess.run(["rsync", "-a", "-W", str(a_root / "big" / "big.bin"), f"{rdst / 'big'}/"], check=True)
        secs = time.monotonic() - t
        big["rsync_W_s"], big["rsync_W_MiB_per_s"] = secs, args.big_mib / secs
        results["big_file"] = big
        print(json.dumps({"big_file": big}), flush=True)
    finally:
        if lsyncd is not None and lsyncd.poll() is None:
            lsyncd.terminate()
            lsyncd.wait(10)
        pair.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print_table(results)
    return 0


def print_table(r: dict[str, Any]) -> None:
    lat, init, big = r["latency"], r["initial_sync"], r["big_file"]
    print()
    print(f"change -> mirrored at {r['args']['rate']:g} changes/s ({r['args']['changes']} changes):")
    for k, v in lat.items():
        if "p50_ms" in v:
            print(
                f"  {k:16s} p50 {v['p50_ms']:8.1f} ms  p99 {v['p99_ms']:8.1f} ms  max {v['max_ms']:8.1f} ms"
                f"  ({v['arrived']}/{v['changes']} arrived)"
            )
        else:
            print(f"  {k:16s} nothing arrived")
    print(f"initial sync of {r['args']['files']} x 4 KiB:")
    print(
        f"  switchover       {init['switchover_sync_s']:.2f} s (comparison + copies; "
        f"{init['switchover_wall_from_backup_start_s']:.2f} s from starting the backup process)"
    )
    print(f"  rsync -a -W      {init['rsync_W_s']:.2f} s")
    print(f"  lsyncd start-up  {init['lsyncd_startup_s']:.2f} s")
    print(f"{big['mib']} MiB file, close -> in place:")
    for k in ("switchover", "lsyncd_delay0", "rsync_W"):
        print(f"  {k:16s} {big[k + '_s']:.2f} s  {big[k + '_MiB_per_s']:.0f} MiB/s")


if __name__ == "__main__":
    sys.exit(main())
