"""Soak the live path: `derain.live` against the loopback RTSP server for a long run, the server
killed and started again every few minutes, with the process's resources sampled throughout.

    python benchmarks/soak.py --minutes 22 --restart-every 120 --json out/soak.jsonl

The server is tests/rtsp_server.py under the system Python (GStreamer's RTSP server; run
tests/install-system-deps.sh as root first). Every --sample seconds a JSON line records RSS,
threads, open file descriptors, frames in/out/dropped and reconnects; at the end the verdict:
did every restart come back (frames flowing again), RSS growth after the first two minutes,
thread and descriptor growth.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

import derain

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "rtsp_server.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(["/usr/bin/python3", str(SERVER), "--port", str(port), "--size", "160x120"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 20)
    if not ready or process.stdout.readline().strip() != "ready":
        process.kill()
        raise SystemExit("soak: the RTSP server did not start (run tests/install-system-deps.sh as root)")
    return process


def resources() -> dict[str, int]:
    """RSS in kB, threads and open descriptors of this process, from /proc."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {"rss_kb": int(status["VmRSS"].split()[0]), "threads": int(status["Threads"]),
            "fds": len(os.listdir("/proc/self/fd"))}


def soak(minutes: float, restart_every: float, sample: float, out: Path) -> dict[str, object]:
    port = free_port()
    server = start_server(port)
    stop = threading.Event()
    latest: dict[str, object] = {}
    restarts: list[dict[str, float]] = []  # when the server came back, and the frames out by then
    engine = derain.build_engine(derain.load_model(stages=1), device="cpu")
    job = threading.Thread(target=lambda: latest.update(report=derain.live(
        f"rtsp://127.0.0.1:{port}/test", engine=engine, timeout=3.0, reconnect_max=1000, stop=stop,
        on_stats=lambda snap: latest.update(stats=snap))), name="soak-live")
    started = time.monotonic()
    job.start()
    with out.open("w") as log:
        next_restart = started + restart_every
        while time.monotonic() - started < minutes * 60:
            time.sleep(sample)
            if time.monotonic() >= next_restart:
                server.kill()
                server.wait()
                time.sleep(5)  # the source is gone for a while, as a camera that reboots
                server = start_server(port)
                stats = latest.get("stats", {})
                restarts.append({"at": time.monotonic() - started, "frames_in": float(stats.get("frames_in", 0))})
                log.write(json.dumps({"restart": restarts[-1]}) + "\n")
                next_restart += restart_every
            log.write(json.dumps({"seconds": round(time.monotonic() - started, 1), **resources(), **latest.get("stats", {})}) + "\n")
            log.flush()
    stop.set()
    job.join()
    server.kill()
    return verdict(out, restarts, latest)


def verdict(out: Path, restarts: list[dict[str, float]], latest: dict[str, object]) -> dict[str, object]:
    samples = [row for row in map(json.loads, out.read_text().splitlines()) if "restart" not in row]
    end = samples[-1]["seconds"]
    settle = min(120.0, end / 2)  # a short trial run settles sooner
    settled = [s for s in samples if s["seconds"] >= settle]
    # A restart recovered when the source came back: live again, frames arriving, before the
    # next restart. One in the last minute may not have had the time, and is not counted.
    counted = [r for r in restarts if end - r["at"] >= 60]
    ends = [r["at"] for r in restarts[1:]] + [end]
    recovered = [any(r["at"] < s["seconds"] <= until and s.get("state") == "live" and s.get("frames_in", 0) > r["frames_in"]
                     for s in samples) for r, until in zip(counted, ends)]
    report = latest.get("report")
    return {
        "minutes": round(end / 60, 1),
        "restarts": len(counted), "recovered": sum(recovered), "reconnects": samples[-1].get("reconnects"),
        "rss_growth_mb_after_settling": round((max(s["rss_kb"] for s in settled) - settled[0]["rss_kb"]) / 1024, 1),
        "threads_first_max_last": [settled[0]["threads"], max(s["threads"] for s in settled), samples[-1]["threads"]],
        "fds_first_max_last": [settled[0]["fds"], max(s["fds"] for s in settled), samples[-1]["fds"]],
        "frames_in": samples[-1].get("frames_in"), "frames_out": samples[-1].get("frames_out"),
        "dropped": samples[-1].get("dropped"), "stopped_by": getattr(report, "stopped_by", None),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=22.0)
    parser.add_argument("--restart-every", type=float, default=120.0, metavar="S")
    parser.add_argument("--sample", type=float, default=5.0, metavar="S")
    parser.add_argument("--json", type=Path, default=Path("soak.jsonl"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # a script's own choice: the soak shares the machine
    result = soak(args.minutes, args.restart_every, args.sample, args.json)
    print(json.dumps(result, indent=2))
    ok = result["recovered"] == result["restarts"] and float(result["rss_growth_mb_after_settling"]) < 50  # type: ignore[arg-type]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
