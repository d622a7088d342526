"""SIP benchmark: sipp against a standalone stack (bench/sip/server.py) on 127.0.0.1.

    .venv/bin/python bench/sip/bench.py [--rates 500,1000,1500] [--seconds 5] [--repeat 3]

Workloads: authenticated REGISTER (401, REGISTER with digest, 200) and authenticated calls (INVITE, 401, ACK,
INVITE with digest, 100, 200, ACK, BYE, 200). For each offered rate it reports the completed rate, failures,
p50/p99 of the authenticated transaction (sipp response-time, start_rtd/rtd in the scenarios) and the server's
CPU (utime+stime from /proc/PID/stat) per completed registration or call. Then the parser's cost per message,
against two pure-Python references run here: the standard library's HTTP header parser
(`http.client.parse_headers`, on the same bytes) and a naive split/partition loop (no validation at all).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def start_server() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(HERE / "server.py"), "--port", "0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line and line[0] == "READY", line
    return proc, int(line[1])


def run_sipp(scenario: str, port: int, rate: int, calls: int, service: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["sipp", "-sf", str(HERE / scenario), "-s", service, "-au", service, "-ap", "secret",
               "-i", "127.0.0.1", "-p", "0", "-r", str(rate), "-rp", "1000", "-m", str(calls), "-l", str(rate),
               "-timeout", "60s", "-nostdin", "-trace_rtt", "-rtt_freq", "1", f"127.0.0.1:{port}"]  # fmt: skip
        start = time.monotonic()
        out = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=120).stdout
        elapsed = time.monotonic() - start
        ok = failed = 0
        for line in out.splitlines():
            if line.strip().startswith("Successful call"):
                ok = int(line.split("|")[-1])
            if line.strip().startswith("Failed call"):
                failed = int(line.split("|")[-1])
        rtts: list[float] = []
        for f in Path(tmp).glob("*_rtt.csv"):
            with f.open() as fh:
                for row in csv.reader(fh, delimiter=";"):
                    if len(row) >= 2 and row[1].replace(".", "", 1).isdigit():
                        rtts.append(float(row[1]))
    rtts.sort()
    return {
        "ok": ok,
        "failed": failed,
        "elapsed": elapsed,
        "p50_ms": rtts[len(rtts) // 2] if rtts else float("nan"),
        "p99_ms": rtts[int(len(rtts) * 0.99)] if rtts else float("nan"),
    }


def load(kind: str, rates: list[int], seconds: float, repeat: int) -> None:
    scenario = "register_auth.xml" if kind == "register" else "call_auth.xml"
    print(f"\n{kind}: offered/s  completed/s  failed  p50 ms  p99 ms  server CPU us per {kind}  (median of {repeat})")
    for rate in rates:
        runs = []
        for _ in range(repeat):
            proc, port = start_server()
            try:
                run_sipp(scenario, port, 50, 50, "user1")  # warm-up
                before = cpu_seconds(proc.pid)
                r = run_sipp(scenario, port, rate, int(rate * seconds), "user1")
                r["cpu_us"] = (cpu_seconds(proc.pid) - before) / max(1, r["ok"]) * 1e6
                r["rate"] = r["ok"] / r["elapsed"]
                runs.append(r)
            finally:
                proc.terminate()
                proc.wait()
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{kind}: {rate:9d}  {med['rate']:11.0f}  {med['failed']:6.0f}  {med['p50_ms']:6.2f}  "
              f"{med['p99_ms']:6.2f}  {med['cpu_us']:8.0f}")  # fmt: skip


def parser_cost(repeat: int) -> None:
    import http.client
    import io
    import timeit

    from signaling.message import parse_message

    register = (
        b"REGISTER sip:127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1-2;rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:user1@127.0.0.1>;tag=1SIPpTag\r\nTo: <sip:user1@127.0.0.1>\r\n"
        b"Call-ID: 1-x@127.0.0.1\r\nCSeq: 2 REGISTER\r\nContact: <sip:user1@127.0.0.1:5090;transport=UDP>\r\n"
        b'Expires: 300\r\nAuthorization: Digest username="user1", realm="bench.local", nonce="6b04e56c.09ab108a1'
        b'3c7437c.4c91f13f3667e68b4e8e950fa49114c6", uri="sip:127.0.0.1:5070", response="0123456789abcdef0123456'
        b'789abcdef", algorithm=MD5, cnonce="abc", qop=auth, nc=00000001\r\nContent-Length: 0\r\n\r\n'
    )
    head = register[register.index(b"\r\n") + 2 :]

    def stdlib() -> object:
        return http.client.parse_headers(io.BytesIO(head))

    def naive() -> object:
        fields: dict[str, list[str]] = {}
        lines = register.decode().split("\r\n")
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                fields.setdefault(name.lower(), []).append(value.strip())
        return fields

    def ours() -> object:
        m = parse_message(register)
        return m.via, m.cseq, m.to  # what the stack reads from every request

    n = 20000
    results = {}
    for name, fn in (("ours (parse + Via, CSeq, To)", ours), ("http.client.parse_headers", stdlib),
                     ("naive split/partition", naive)):  # fmt: skip
        runs = [timeit.timeit(fn, number=n, timer=time.process_time) / n * 1e6 for _ in range(repeat)]
        results[name] = statistics.median(runs)
    print(f"\nparser, {len(register)}-byte authenticated REGISTER, CPU us per message (median of {repeat}):")
    base = results["http.client.parse_headers"]
    for name, us in results.items():
        print(f"  {name:32s} {us:7.1f} us   ({us / base:.2f} x stdlib)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="500,1000,1500")
    ap.add_argument("--call-rates", default="200,400")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("sipp") is None:
        sys.exit("sipp is not installed (Debian package sip-tester)")
    parser_cost(args.repeat)
    load("register", [int(r) for r in args.rates.split(",")], args.seconds, args.repeat)
    load("call", [int(r) for r in args.call_rates.split(",")], args.seconds, args.repeat)


if __name__ == "__main__":
    main()
