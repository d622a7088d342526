"""The side-by-side benchmark's own parts: the room model's arithmetic, the namespace's clean-up, and Janus started
from the generated configuration answering its HTTP API in the namespace (when Debian's janus is installed)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.sfu import compare, janus
from bench.sfu.netns import VethNamespace

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="ip netns needs root")


def run(server: str, subscribers: int, cores: float, packets_per_s: float) -> dict[str, object]:
    return {
        "server": server,
        "subscribers": subscribers,
        "valid": True,
        "cpu_core_fraction": cores,
        "video_packets_per_s": packets_per_s,
    }


def test_room_model_is_the_line_through_the_runs() -> None:
    # 30 us per forwarded packet over a 0.02-core one-publisher room, 160 packets/s per stream
    runs = [run("janus", n, 0.02 + 30e-6 * 160 * n, 160.0 * n) for n in (1, 5, 10)]
    runs.append({**run("janus", 20, 9.0, 3200.0), "valid": False})  # an invalid run is left out
    model = compare.room_model(runs, "janus")
    assert model is not None
    assert model["us_per_forwarded_packet"] == pytest.approx(30, abs=0.01)
    assert model["room_forwarded_packets_per_s"] == 64000
    assert model["room_cores_low"] == pytest.approx(0.02 + (16000 + 64000) * 30e-6, abs=0.01)
    assert model["room_cores_high"] == pytest.approx(100 * 0.02 + 64000 * 30e-6, abs=0.01)
    assert compare.room_model(runs[:1], "janus") is None  # one N gives no line


def namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout


@needs_root
def test_namespace_and_veth_are_removed() -> None:
    space = VethNamespace.create()
    try:
        assert space.name in namespaces()
        inside = subprocess.run(space.command("ip", "-o", "addr"), capture_output=True, text=True, check=True).stdout
        assert f"{space.inside_address}/30" in inside
    finally:
        space.close()
    assert space.name not in namespaces()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert space.outside not in links


@needs_root
@pytest.mark.skipif(shutil.which("janus") is None, reason="Janus is a bench dependency (make bench-deps)")
async def test_janus_answers_from_the_generated_configuration(tmp_path: Path) -> None:
    space = VethNamespace.create()
    process = None
    try:
        config = janus.write_config(tmp_path / "conf", space.inside_address, space.inside)
        assert sorted(p.name for p in (config.parent / "plugins").iterdir()) == ["libjanus_videoroom.so"]
        assert sorted(p.name for p in (config.parent / "transports").iterdir()) == ["libjanus_http.so"]
        process = await asyncio.create_subprocess_exec(
            *space.command(*janus.command(config)), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        api = janus.JanusApi(janus.base_url(space.inside_address))
        await api.open()
        try:
            assert await api.create_room(publishers=1) == janus.ROOM
            assert await api.participants() == 0
        finally:
            await api.close()
    finally:
        if process is not None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)
        space.close()
