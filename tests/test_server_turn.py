"""Through a TURN relay: Debian's coturn on loopback, the server and its peer both allowed relay candidates only."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from s2v.server.rtc import rtc_configuration
from tests.test_server_errors import FrameCounter, offer_sdp, post

pytestmark = pytest.mark.skipif(shutil.which("turnserver") is None,
                                reason="needs coturn's turnserver (apt-get install coturn)")

USER, PASSWORD = "s2v", "relay-secret"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def turn(tmp_path):
    """A coturn server on a free loopback port with one long-term user; yields its turn: URL."""
    port = _free_port()
    relay = _free_port()
    server = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         "--lt-cred-mech", f"--user={USER}:{PASSWORD}", "--realm=s2v", "--no-tls", "--no-dtls", "--no-cli",
         "--allow-loopback-peers", f"--min-port={relay}", f"--max-port={relay + 50}",
         f"--userdb={tmp_path / 'turndb'}", f"--pidfile={tmp_path / 'turn.pid'}", "--log-file=stdout"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"turn:127.0.0.1:{port}?transport=udp"
    finally:
        server.terminate()
        server.wait(10)


async def test_a_session_streams_through_a_turn_relay(live_server, turn):
    server = await live_server(ice_servers=(turn,), ice_username=USER, ice_credential=PASSWORD, ice_relay_only=True)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/ice") as response:
            ice = await response.json()
    assert ice == {"iceServers": [{"urls": [turn], "username": USER, "credential": PASSWORD}],
                                     "iceTransportPolicy": "relay"}
    pc = RTCPeerConnection(rtc_configuration((turn,), USER, PASSWORD, relay_only=True))
    frames = FrameCounter()
    pc.on("track", frames.attach)
    try:
        sdp = await offer_sdp(pc, "video")
        assert " typ relay " in sdp and " typ host " not in sdp
        status, reply = await post(f"{server.url}/offer", json={"sdp": sdp, "type": "offer"})
        assert status == 200, reply
        candidates = [line for line in reply["sdp"].splitlines() if line.startswith("a=candidate:")]
        assert candidates and all(" typ relay " in line for line in candidates)  # the server too: relay only
        connected = asyncio.Event()
        pc.on("connectionstatechange", lambda: pc.connectionState == "connected" and connected.set())
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], reply["type"]))
        await asyncio.wait_for(connected.wait(), 15)
        await asyncio.sleep(2.0)
        assert frames.in_last(1.0) >= 20  # the avatar arrives at full rate through the relay
    finally:
        await pc.close()


async def test_relay_only_without_a_turn_server_is_refused_at_start():
    from s2v.server.config import ServerConfig

    with pytest.raises(ValueError, match="needs a turn: server"):
        ServerConfig(ice_servers=("stun:127.0.0.1:3478",), ice_relay_only=True)
