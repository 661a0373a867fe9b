"""`serve()` (what `s2v serve` runs): prints where it listens, answers, and stops cleanly on SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

SERVE = """
import sys
from pathlib import Path
from s2v.server.app import serve
from s2v.server.config import ServerConfig
serve(ServerConfig(port=0, device="cpu", avatar_dir=Path(sys.argv[1])))
"""


def test_serve_prints_its_address_answers_and_stops_on_sigint(tmp_path):
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("s2v serving on http://127.0.0.1:"), line
        url = line.split()[3]
        with urllib.request.urlopen(f"{url}healthz", timeout=10) as response:
            health = json.load(response)
        assert health["ok"] and health["sessions"] == 0 and health["provider"] == "CPUExecutionProvider"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"<video" in response.read()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=15) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


DRAIN = """
import sys
from pathlib import Path
from s2v.server.app import serve
from s2v.server.config import ServerConfig
serve(ServerConfig(port=0, device="cpu", avatar_dir=Path(sys.argv[1]), drain_timeout_s=float(sys.argv[2])))
"""


def _start(tmp_path, drain_s: float) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen([sys.executable, "-c", DRAIN, str(tmp_path), str(drain_s)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    return server, server.stdout.readline().split()[3]


async def test_sigterm_drains_live_sessions_before_stopping(tmp_path):
    import asyncio
    import time

    from aiortc import RTCPeerConnection

    from s2v.server.rtc import rtc_configuration
    from tests.test_server_errors import connect, offer_sdp, post

    server, url = _start(tmp_path, drain_s=20.0)
    try:
        pc, frames, _ = await connect(url.rstrip("/"), "video")
        await asyncio.sleep(1.0)
        server.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.5)
        assert server.poll() is None and frames.in_last(1.0) >= 20  # the live session goes on
        late = RTCPeerConnection(rtc_configuration())
        status, reply = await post(f"{url}offer", json={"sdp": await offer_sdp(late, "video"), "type": "offer"})
        await late.close()
        assert status == 503 and "shutting down" in reply["error"]  # and no new one starts
        started = time.monotonic()
        await pc.close()  # its peer hangs up: nothing is left to wait for
        assert await asyncio.to_thread(server.wait, 15) == 0
        assert time.monotonic() - started < 10  # well before the 20 s drain limit
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


async def test_a_second_signal_stops_at_once_whatever_is_live(tmp_path):
    import asyncio
    import time

    from tests.test_server_errors import connect

    server, url = _start(tmp_path, drain_s=60.0)
    try:
        pc, _, _ = await connect(url.rstrip("/"), "video")
        server.send_signal(signal.SIGTERM)
        await asyncio.sleep(1.0)
        assert server.poll() is None  # draining: the live session may go on for a minute
        started = time.monotonic()
        server.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(server.wait, 15) == 0
        assert time.monotonic() - started < 10
        await pc.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
