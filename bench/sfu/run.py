"""Runs the SFU room benchmark: a server process plus a load-generator process per run; medians of the runs.

.venv/bin/python -m bench.sfu                 # everything, 3 runs each, 5 s warm-up, 30 s window
.venv/bin/python -m bench.sfu --runs 1 --window 10 --only forward
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SCENARIOS: list[tuple[str, list[str]]] = [
    ("forward-1", ["forward", "--subscribers", "1"]),
    ("forward-5", ["forward", "--subscribers", "5"]),
    ("forward-10", ["forward", "--subscribers", "10"]),
    ("rtp-forward-1", ["forward", "--subscribers", "1", "--plain-rtp"]),
    ("rtp-forward-5", ["forward", "--subscribers", "5", "--plain-rtp"]),
    ("rtp-forward-10", ["forward", "--subscribers", "10", "--plain-rtp"]),
    ("video-only-1", ["forward", "--subscribers", "1", "--no-audio"]),
    ("video-only-5", ["forward", "--subscribers", "5", "--no-audio"]),
    ("video-only-10", ["forward", "--subscribers", "10", "--no-audio"]),
    ("audio-10", ["audio", "--participants", "10"]),
    ("audio-50", ["audio", "--participants", "50"]),
    ("audio-100", ["audio", "--participants", "100"]),
    ("full-100", ["full", "--participants", "100", "--last-n", "4", "--subscribers", "0"]),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_once(args: list[str], warmup: float, window: float) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.sfu.server", "--control-port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "ready"
        timing = ["--warmup", str(warmup), "--window", str(window)]
        out = subprocess.run(
            [sys.executable, "-m", "bench.sfu.loadgen", *args, *timing, "--control-port", str(port)],
            capture_output=True,
            text=True,
            timeout=warmup + window + 240,
            check=True,
        )
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        server.terminate()
        server.wait(10)


def median(results: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, value in results[0].items():
        values = [r[key] for r in results if isinstance(r.get(key), (int, float)) and not isinstance(r[key], bool)]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        merged[key] = statistics.median(values) if numeric and values else value
    merged["runs"] = len(results)
    return merged


def wait_for_quiet(limit: float, longest: float) -> float:
    """Wait (up to `longest` seconds) for the 1-minute load average to fall under `limit`; returns it."""
    deadline = time.time() + longest
    while os.getloadavg()[0] >= limit and time.time() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument("--only", nargs="*", default=None, help="scenario names (exact)")
    parser.add_argument("--quiet-load", type=float, default=1.5, help="wait for a load average under this")
    parser.add_argument("--quiet-wait", type=float, default=120, help="longest wait for a quiet machine (s)")
    parser.add_argument("--attempts", type=int, default=2, help="tries per run when a run is invalid")
    parser.add_argument("--output", default=str(Path(__file__).with_name("results.json")))
    options = parser.parse_args()
    results: dict[str, Any] = {}
    output = Path(options.output)
    if output.exists():
        results = json.loads(output.read_text())
    for name, args in SCENARIOS:
        if options.only and name not in options.only:
            continue
        runs: list[dict[str, Any]] = []
        invalid: list[dict[str, Any]] = []
        for _ in range(options.runs):
            for _ in range(options.attempts):
                wait_for_quiet(options.quiet_load, options.quiet_wait)
                result = run_once(args, options.warmup, options.window)
                time.sleep(1)
                if result["valid"]:
                    runs.append(result)
                    break
                invalid.append(result)
                print(name, "invalid run:", result["problems"], flush=True)
        summary: dict[str, Any] = median(runs) if runs else {"valid": False}
        summary["each_run"] = runs
        summary["invalid_runs"] = invalid
        results[name] = summary
        brief = {k: v for k, v in summary.items() if k not in ("each_run", "invalid_runs", "server_slots")}
        print(name, json.dumps(brief), flush=True)
        output.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
