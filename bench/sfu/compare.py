"""This SFU side by side with Janus VideoRoom (Debian's `janus`, unpatched), the same load, runs alternated.

    .venv/bin/python -m bench.sfu.compare                                  # N = 1 5 10 20 40, 2 rounds, 30 s
    .venv/bin/python -m bench.sfu.compare --subscribers 1 5 --rounds 1 --window 10   # a quick look

Both servers run in a network namespace behind a veth pair that this command creates (libnice, Janus's ICE, does
not gather loopback), the load generator (`bench.sfu.loadgen forward`: one pre-encoded VP8 1.5 Mbit/s + Opus
publisher, N WebRTC subscribers that never decode) outside it, so the media crosses the same veth for both. Each
(round, N) runs both servers, in an order that alternates, each in a fresh process. Needs root (`ip netns`) and
`janus` (`make bench-deps`). The namespace and every process started are removed on exit, failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from . import janus
from .netns import VethNamespace
from .run import wait_for_quiet

SERVERS = ("sfu", "janus")
CONTROL_PORT = 47000
#: the 100-person room the figures are extrapolated to: everyone publishes one camera, everyone receives last_n
ROOM_SIZE = 100
ROOM_LAST_N = 4


class Processes:
    """The servers and load generators this command started, each in its own process group, ended by its id."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], log: Path) -> subprocess.Popen[str]:
        with log.open("w") as out:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=out, text=True, start_new_session=True)
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen[str]) -> None:
        """End the process's group (the process and what it started), by its id; idempotent."""
        if process not in self.running:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)  # also when the leader has exited and left children
        except ProcessLookupError:
            pass
        if process.poll() is None:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
        self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(self.running):
            self.stop(process)


def start_server(
    server: str, space: VethNamespace, processes: Processes, folder: Path
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start `server` inside the namespace; returns its process and the load generator's arguments to reach it."""
    if server == "sfu":
        process = processes.start(
            space.command(
                sys.executable,
                "-m",
                "bench.sfu.server",
                "--control-port",
                str(CONTROL_PORT),
                "--host",
                space.inside_address,
            ),
            folder / "sfu.log",
        )
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the SFU did not start: see {folder / 'sfu.log'}")
        return process, ["--control-host", space.inside_address, "--control-port", str(CONTROL_PORT)]
    config = folder / "janus" / "janus.jcfg"
    if not config.exists():
        janus.write_config(config.parent, space.inside_address, space.inside)
    process = processes.start(space.command(*janus.command(config)), folder / "janus.log")
    return process, ["--janus", janus.base_url(space.inside_address), "--server-pid", str(process.pid)]


def run_once(
    server: str, subscribers: int, options: argparse.Namespace, space: VethNamespace, processes: Processes, folder: Path
) -> dict[str, Any]:
    process, reach = start_server(server, space, processes, folder)
    timing = ["--warmup", str(options.warmup), "--window", str(options.window)]
    loadgen = [sys.executable, "-m", "bench.sfu.loadgen", "forward", "--subscribers", str(subscribers)]
    loadgen += ["--subscriber-processes", str(math.ceil(subscribers / options.subscribers_per_process))]
    log = folder / "loadgen.log"
    generator = processes.start([*loadgen, *timing, "--peer-address", space.outside_address, *reach], log)
    try:
        stdout, _ = generator.communicate(timeout=options.warmup + options.window + 120 + 3 * subscribers)
    except subprocess.TimeoutExpired:
        return {"server": server, "subscribers": subscribers, "valid": False, "problems": ["load generator timed out"]}
    finally:
        processes.stop(generator)  # and its subscriber processes: its process group
        processes.stop(process)
    lines = stdout.strip().splitlines()
    if generator.returncode != 0 or not lines:
        error = log.read_text().strip().splitlines()
        traceback = [i for i, line in enumerate(error) if line.startswith("Traceback")]
        tail = error[traceback[-1] :] if traceback else error[-5:]
        return {
            "server": server,
            "subscribers": subscribers,
            "valid": False,
            "problems": ["load generator failed"],
            "error": tail[-12:],
        }
    return dict(json.loads(lines[-1]))


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarise(results: list[dict[str, Any]], subscribers: list[int]) -> dict[str, Any]:
    """Per N and server: medians of the valid runs; the ratio is this SFU's median over Janus's."""
    table: dict[str, Any] = {}
    for n in subscribers:
        row: dict[str, Any] = {}
        for server in SERVERS:
            runs = [r for r in results if r["server"] == server and r["subscribers"] == n and r["valid"]]
            loads = [r[k] for r in runs for k in ("load_before", "load_after")]
            row[server] = {
                "valid_runs": len(runs),
                "cpu_per_1000_video_packets": median_of(runs, "cpu_per_1000_video_packets"),
                "cpu_core_fraction": median_of(runs, "cpu_core_fraction"),
                "video_frame_loss": median_of(runs, "video_frame_loss"),
                "latency_p50_ms": median_of(runs, "latency_p50_ms"),
                "latency_p99_ms": median_of(runs, "latency_p99_ms"),
                "load": [min(loads), max(loads)] if loads else None,
            }
        ours, theirs = row["sfu"]["cpu_per_1000_video_packets"], row["janus"]["cpu_per_1000_video_packets"]
        row["ratio"] = round(ours / theirs, 2) if ours and theirs else None
        table[str(n)] = row
    return table


def room_model(results: list[dict[str, Any]], server: str) -> dict[str, Any] | None:
    """Extrapolate the 100-person room (video only, one layer) from a straight-line fit of the server's CPU (cores)
    against the video packets it forwarded per second, over every valid run: the slope is the cost of one packet,
    the intercept what the one-publisher room costs with no subscriber (taking in the publisher's video and Opus,
    and for this SFU its mixer). In the room ROOM_SIZE cameras come in and each of ROOM_SIZE subscribers gets
    ROOM_LAST_N of them, at the measured packet rate per stream. Two bounds: low, every video packet in or out
    costs the slope and the intercept is paid once; high, the forwarded packets cost the slope and every
    publisher costs the whole intercept (as if each brought its own empty room's cost)."""
    runs = [r for r in results if r["server"] == server and r["valid"] and r.get("video_packets_per_s")]
    if len({r["subscribers"] for r in runs}) < 2:
        return None
    rates = [float(r["video_packets_per_s"]) for r in runs]
    cores = [float(r["cpu_core_fraction"]) for r in runs]
    slope, intercept = statistics.linear_regression(rates, cores)
    per_stream = statistics.median(r["video_packets_per_s"] / r["subscribers"] for r in runs)
    incoming = ROOM_SIZE * per_stream
    forwarded = ROOM_SIZE * ROOM_LAST_N * per_stream
    return {
        "us_per_forwarded_packet": round(slope * 1e6, 2),
        "one_publisher_room_cores": round(intercept, 4),
        "packets_per_s_per_stream": round(per_stream, 1),
        "room_forwarded_packets_per_s": round(forwarded),
        "room_cores_low": round(intercept + (incoming + forwarded) * slope, 2),
        "room_cores_high": round(ROOM_SIZE * intercept + forwarded * slope, 2),
        # what one core forwards (this SFU is one Python process: one core is its ceiling)
        "streams_per_core": round(1 / (slope * per_stream)) if slope > 0 else None,
    }


def fmt(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.2f} %"


def report(table: dict[str, Any], models: dict[str, Any]) -> str:
    lines = [
        "CPU per 1,000 forwarded video packets (s), frame loss, latency publisher -> subscriber p50/p99 (ms); "
        "medians of valid runs",
        "| N | this SFU | Janus | ratio | loss (SFU / Janus) | latency SFU | latency Janus | runs | load |",
        "|---|---:|---:|---:|---|---|---|---|---|",
    ]
    for n, row in table.items():
        ours, theirs = row["sfu"], row["janus"]
        loads = [v for side in (ours, theirs) for v in side["load"] or []]
        lines.append(
            f"| {n} | {fmt(ours['cpu_per_1000_video_packets'], digits=4)} "
            f"| {fmt(theirs['cpu_per_1000_video_packets'], digits=4)} | {fmt(row['ratio'], 'x', 2)} "
            f"| {percent(ours['video_frame_loss'])} / {percent(theirs['video_frame_loss'])} "
            f"| {fmt(ours['latency_p50_ms'], digits=1)} / {fmt(ours['latency_p99_ms'], digits=1)} "
            f"| {fmt(theirs['latency_p50_ms'], digits=1)} / {fmt(theirs['latency_p99_ms'], digits=1)} "
            f"| {ours['valid_runs']} / {theirs['valid_runs']} "
            f"| {f'{min(loads):.1f}-{max(loads):.1f}' if loads else '-'} |"
        )
    lines.append("")
    lines.append(
        f"{ROOM_SIZE}-person video room (every camera on, last_n {ROOM_LAST_N}, one layer), extrapolated from a "
        "line fit of CPU against forwarded packets/s (slope: cost per packet; intercept: the one-publisher room "
        "with no subscriber). Low: every video packet in or out at the slope, intercept once. High: forwarded "
        "packets at the slope, the intercept once per publisher."
    )
    for server, model in models.items():
        if model is None:
            lines.append(f"  {server}: needs valid runs at two N or more")
            continue
        lines.append(
            f"  {server}: {model['room_cores_low']} to {model['room_cores_high']} cores "
            f"({model['us_per_forwarded_packet']} us per forwarded packet, "
            f"{model['room_forwarded_packets_per_s']} forwarded packets/s; "
            f"intercept {model['one_publisher_room_cores']} cores; one core forwards {model['streams_per_core']} "
            f"streams, the room needs {ROOM_SIZE * ROOM_LAST_N})"
        )
    return "\n".join(lines)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 5, 10, 20, 40], help="the N to measure")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each server at each N (alternated)")
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--window", type=float, default=30, help="measured window per run (s)")
    parser.add_argument(
        "--subscribers-per-process", type=int, default=8, help="the load generator's subscribers per process"
    )
    parser.add_argument("--quiet-load", type=float, default=3.0, help="before each run, wait for a load under this")
    parser.add_argument("--quiet-wait", type=float, default=60, help="longest wait for a quieter machine (s)")
    parser.add_argument("--attempts", type=int, default=2, help="tries per run when a run is invalid")
    parser.add_argument("--output", default=str(Path(__file__).with_name("results-janus.json")))
    options = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: it creates a network namespace (ip netns)")
    if shutil.which("janus") is None or not (janus.LIBRARY / "plugins/libjanus_videoroom.so").exists():
        raise SystemExit("Janus is not installed: make bench-deps (apt-get install janus)")
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    processes = Processes()
    results: list[dict[str, Any]] = []
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    output = Path(options.output)
    space: VethNamespace | None = None
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="sfu-janus-") as temporary:
        try:
            space = VethNamespace.create()
            for result in measure(options, space, processes, Path(temporary)):
                results.append(result)
                save(output, results, options, commit)
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted: the figures below are from the runs completed so far", flush=True)
        finally:
            processes.stop_all()
            if space is not None:
                space.close()
    print(report(*save(output, results, options, commit)))
    if interrupted:
        raise SystemExit(130)


def measure(
    options: argparse.Namespace, space: VethNamespace, processes: Processes, folder: Path
) -> Iterator[dict[str, Any]]:
    """Every run, as it ends: rounds x N x both servers (the order alternating), an invalid run tried again."""
    for round_index in range(options.rounds):
        for position, n in enumerate(options.subscribers):
            order = SERVERS if (round_index + position) % 2 == 0 else SERVERS[::-1]
            for server in order:
                for _ in range(options.attempts):
                    wait_for_quiet(options.quiet_load, options.quiet_wait)
                    result = run_once(server, n, options, space, processes, folder)
                    result.update(round=round_index, subscribers=n, server=server)
                    keys = ("valid", "cpu_per_1000_video_packets", "video_frame_loss", "latency_p50_ms")
                    brief = {k: result.get(k) for k in keys}
                    print(f"round {round_index} N={n} {server}: {json.dumps(brief)}", flush=True)
                    if not result["valid"]:
                        print("  invalid:", result.get("problems"), *result.get("error", []), flush=True)
                    yield result
                    time.sleep(1)
                    if result["valid"]:
                        break


def save(
    output: Path, results: list[dict[str, Any]], options: argparse.Namespace, commit: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write every run so far, the summary and the room model to `output`; returns the summary and the model."""
    table = summarise(results, options.subscribers)
    models = {server: room_model(results, server) for server in SERVERS}
    document = {
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "window_s": options.window,
        "summary": table,
        "room_model": models,
        "runs": results,
    }
    output.write_text(json.dumps(document, indent=1) + "\n")
    return table, models


if __name__ == "__main__":
    main()
