"""Meeting API throughput: creations per second and latency with 16 concurrent clients, on a store of 10,000
meetings, then `GET /users/me/meetings` latency at that size. The server runs in its own process; this
process is the load generator.

    .venv/bin/python -m bench.api_load [--database sqlite|postgresql] [--stored 10000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.serving import PASSWORD, serving

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def pg_database() -> str:
    import asyncpg

    name = f"meetings_bench_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    return name


async def drop_pg_database(name: str) -> None:
    import asyncpg

    connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await connection.close()


async def token(session: aiohttp.ClientSession, base: str, username: str, password: str) -> str:
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    async with session.post(
        f"{base}/api/auth/0.1/token", json={"expiration": 36000}, headers={"Authorization": f"Basic {basic}"}
    ) as response:
        return str((await response.json())["data"]["token"])


async def create_loop(
    session: aiohttp.ClientSession, url: str, auth: str, until: float, latencies: list[float], errors: list[int]
) -> None:
    while time.perf_counter() < until:
        started = time.perf_counter()
        async with session.post(url, json={"name": "bench"}, headers={"X-Auth-Token": auth}) as response:
            await response.read()
            if response.status != 201:
                errors.append(response.status)
        latencies.append(time.perf_counter() - started)


async def fill(session: aiohttp.ClientSession, url: str, auth: str, count: int) -> None:
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.post(url, json={"name": "stored"}, headers={"X-Auth-Token": auth}) as response:
                assert response.status == 201, await response.text()

    await asyncio.gather(*(worker() for _ in range(16)))


async def measure_reads(session: aiohttp.ClientSession, url: str, auth: str, rounds: int) -> list[float]:
    latencies = []
    for _ in range(rounds):
        started = time.perf_counter()
        async with session.get(url, headers={"X-Auth-Token": auth}) as response:
            await response.read()
            assert response.status == 200
        latencies.append(time.perf_counter() - started)
    return latencies


async def run(database: str, stored: int, seconds: float, clients: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="meetings-bench-"))
    pg_name = None
    if database == "postgresql":
        pg_name = await pg_database()
        url = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
    else:
        url = f"sqlite:///{workdir}/bench.db"
    try:
        async with serving(workdir, url) as server:
            return {"database": database, **await _measure(server.base, server.pid, stored, seconds, clients)}
    finally:
        if pg_name:
            await drop_pg_database(pg_name)


async def _measure(base: str, pid: int, stored: int, seconds: float, clients: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=clients + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        admin = await token(session, base, "admin", PASSWORD)
        async with session.post(
            f"{base}/api/confd/1.1/users",
            json={"username": "few", "password": "few-password"},
            headers={"X-Auth-Token": admin},
        ) as response:
            assert response.status == 201
        few = await token(session, base, "few", "few-password")
        mine = f"{base}/api/confd/1.1/users/me/meetings"
        started = time.perf_counter()
        await fill(session, mine, admin, stored)
        fill_rate = stored / (time.perf_counter() - started)
        for _ in range(10):
            async with session.post(mine, json={"name": "few"}, headers={"X-Auth-Token": few}) as response:
                assert response.status == 201

        latencies: list[float] = []
        errors: list[int] = []
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        until = started + seconds
        await asyncio.gather(*(create_loop(session, mine, admin, until, latencies, errors) for _ in range(clients)))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before

        few_list = await measure_reads(session, mine, few, 200)
        page_list = await measure_reads(session, f"{mine}?limit=100&order=creation_time&direction=desc", admin, 200)
        return {
            "stored_before": stored,
            "fill_rate_per_s": round(fill_rate),
            "creations": len(latencies),
            "errors": len(errors),
            "creations_per_s": round(len(latencies) / elapsed),
            "create_p50_ms": round(statistics.median(latencies) * 1000, 1),
            "create_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
            "server_cpu_ms_per_creation": round(cpu / max(1, len(latencies)) * 1000, 2),
            "list_10_of_10k_p50_ms": round(statistics.median(few_list) * 1000, 1),
            "list_10_of_10k_p99_ms": round(percentile(few_list, 0.99) * 1000, 1),
            "list_page100_of_10k_p50_ms": round(statistics.median(page_list) * 1000, 1),
            "list_page100_of_10k_p99_ms": round(percentile(page_list, 0.99) * 1000, 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", choices=("sqlite", "postgresql"), action="append")
    parser.add_argument("--stored", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    for database in args.database or ["sqlite", "postgresql"]:
        print(asyncio.run(run(database, args.stored, args.seconds, args.clients)), flush=True)


if __name__ == "__main__":
    main()
