"""`serve()` (what `s2v serve` runs): prints where it listens, answers, and stops cleanly on SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
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


TLS_JSON = """
import sys
from pathlib import Path
from s2v.server.app import serve
from s2v.server.config import ServerConfig
serve(ServerConfig(port=0, device="cpu", avatar_dir=Path(sys.argv[1]), certfile=Path(sys.argv[2]),
                   keyfile=Path(sys.argv[3]), log_format="json"))
"""


def test_serve_speaks_https_with_a_certificate_and_logs_json(tmp_path):
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = subprocess.Popen([sys.executable, "-c", TLS_JSON, str(tmp_path), str(cert), str(key)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("s2v serving on https://127.0.0.1:"), line
        url = line.split()[3]
        tls = ssl.create_default_context(cafile=str(cert))
        tls.check_hostname = False  # the certificate names 127.0.0.1 as CN only
        with urllib.request.urlopen(f"{url}healthz", timeout=10, context=tls) as response:
            assert json.load(response)["ok"]
        refused = urllib.request.Request(f"{url}offer", data=b"{", headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(refused, timeout=10, context=tls)
        except urllib.error.HTTPError as error:
            assert error.code == 400
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=15)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(entry) for entry in lines)
    assert any("/offer refused: 400" in entry["message"] for entry in lines)


def test_session_log_lines_carry_the_session_id_as_a_field():
    import io
    import logging

    from s2v.server.logs import JsonFormatter
    from s2v.server.session import SessionLog

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("s2v.test.session_log")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        SessionLog(logger, {"session": "ab12cd34"}).info("peer connection %s", "up")
    finally:
        logger.removeHandler(handler)
    entry = json.loads(out.getvalue())
    assert entry["session"] == "ab12cd34" and entry["message"] == "[session ab12cd34] peer connection up"
