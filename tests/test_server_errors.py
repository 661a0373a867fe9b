"""Bad requests and bad peers get clear answers, and never hurt another session."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from s2v.client.load import scrape_metrics
from s2v.server.rtc import rtc_configuration

BUILTIN_PHOTO = Path(__file__).resolve().parent.parent / "s2v" / "assets" / "avatar.jpg"
NO_MEDIA_SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


async def offer_sdp(pc: RTCPeerConnection, *kinds: str) -> str:
    for kind in kinds:
        pc.addTransceiver(kind, direction="recvonly" if kind == "video" else "sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def post(url: str, **kwargs) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, **kwargs) as response:
            return response.status, await response.json()


async def health(url: str) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as response:
            return await response.json()


async def wait_for(predicate, within_s: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(step_s)
    return False


class FrameCounter:
    """Drains a received video track, keeping arrival times and the mouth crops."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.task: asyncio.Task | None = None

    def attach(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self.task = asyncio.ensure_future(self._drain(track))

    async def _drain(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.times.append(time.monotonic())
        except MediaStreamError:
            pass

    def in_last(self, seconds: float) -> int:
        now = time.monotonic()
        return sum(1 for t in self.times if now - t <= seconds)


async def connect(url: str, *kinds: str) -> tuple[RTCPeerConnection, FrameCounter, dict]:
    """A receiving peer; returns once it is connected."""
    pc = RTCPeerConnection(rtc_configuration())
    frames = FrameCounter()
    pc.on("track", frames.attach)
    status, reply = await post(f"{url}/offer", json={"sdp": await offer_sdp(pc, *kinds), "type": "offer"})
    assert status == 200, reply
    connected = asyncio.Event()
    pc.on("connectionstatechange", lambda: pc.connectionState == "connected" and connected.set())
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], reply["type"]))
    await asyncio.wait_for(connected.wait(), 10)
    return pc, frames, reply


@pytest.mark.parametrize(
    "body, words",
    [
        (b"{not json", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),  # the parser's recursion runs out
        (b'{"sdp": ' + b"9" * 5000 + b"}", "not valid JSON"),  # beyond Python's int digit limit
        (b"[1, 2]", "JSON object"),
        (json.dumps({"type": "offer"}).encode(), 'missing "sdp"'),
        (json.dumps({"sdp": "hello, I am not an SDP", "type": "offer"}).encode(), "invalid SDP"),
        (json.dumps({"sdp": "v=0\r\nm=audio banana\r\n", "type": "offer"}).encode(), "invalid SDP"),
        (json.dumps({"sdp": NO_MEDIA_SDP, "type": "offer"}).encode(), "no audio or video m-line"),
        (json.dumps({"sdp": NO_MEDIA_SDP, "type": "answer"}).encode(), '"type" must be "offer"'),
        (json.dumps({"sdp": "v=0\r\n" + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * 500}).encode(), "500 m-lines"),
    ],
)
async def test_bad_offers_are_400_with_a_reason(live_server, body, words):
    server = await live_server()
    status, reply = await post(f"{server.url}/offer", data=body, headers={"Content-Type": "application/json"})
    assert status == 400
    assert words in reply["error"]
    assert (await health(server.url))["sessions"] == 0


@pytest.mark.parametrize("edit, expected", [
    (lambda sdp: sdp.replace("a=mid:1", "a=mid:0"), 400),  # two m-lines, one mid
    (lambda sdp: "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith("a=mid")), 400),  # none
    (lambda sdp: "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith("a=group:BUNDLE")), 200),
])
async def test_offers_aiortc_cannot_answer_are_400_and_leave_nothing_behind(live_server, edit, expected):
    server = await live_server()
    pc = RTCPeerConnection(rtc_configuration())
    sdp = edit(await offer_sdp(pc, "audio", "video"))
    await pc.close()
    status, reply = await post(f"{server.url}/offer", json={"sdp": sdp, "type": "offer"})
    assert status == expected, reply  # aiortc answers an offer without BUNDLE (one transport per m-line)
    if status == 400:
        assert "answer the offer" in reply["error"]
        assert await wait_for(lambda: _no_sessions(server.url), 5)


async def test_an_offer_that_receives_no_video_is_refused(live_server):
    server = await live_server()
    pc = RTCPeerConnection(rtc_configuration())
    try:
        status, reply = await post(f"{server.url}/offer", json={"sdp": await offer_sdp(pc, "audio"), "type": "offer"})
    finally:
        await pc.close()
    assert status == 400 and "receive video" in reply["error"]


async def test_an_unknown_avatar_is_404(live_server):
    server = await live_server()
    pc = RTCPeerConnection(rtc_configuration())
    try:
        sdp = await offer_sdp(pc, "audio", "video")
        status, reply = await post(f"{server.url}/offer", json={"sdp": sdp, "type": "offer", "avatar": "0123456789abcdef"})
    finally:
        await pc.close()
    assert status == 404 and "unknown avatar" in reply["error"]


async def test_a_full_server_refuses_with_503_and_recovers(live_server):
    server = await live_server(max_sessions=1)
    first, _, _ = await connect(server.url, "video")
    second = RTCPeerConnection(rtc_configuration())
    try:
        status, reply = await post(f"{server.url}/offer", json={"sdp": await offer_sdp(second, "video"), "type": "offer"})
        assert status == 503 and "capacity" in reply["error"]
    finally:
        await first.close()
        await second.close()
    assert await wait_for(lambda: _no_sessions(server.url), 5)
    third, frames, _ = await connect(server.url, "video")
    await third.close()


async def test_abandoned_offers_do_not_lock_out_a_peer_that_connects(live_server):
    server = await live_server(max_sessions=1, max_connecting=3)
    abandoned = []
    for _ in range(2):  # answered, then never connected: they wait out the connect timeout in their own slots
        pc = RTCPeerConnection(rtc_configuration())
        status, _ = await post(f"{server.url}/offer", json={"sdp": await offer_sdp(pc, "video"), "type": "offer"})
        assert status == 200
        abandoned.append(pc)
    real, frames, _ = await connect(server.url, "video")  # with one cap for both, this was a 503
    late = RTCPeerConnection(rtc_configuration())
    try:
        await asyncio.sleep(1.5)
        assert frames.in_last(1.0) >= 20
        status, reply = await post(f"{server.url}/offer", json={"sdp": await offer_sdp(late, "video"), "type": "offer"})
        assert status == 503 and "capacity" in reply["error"]  # the live cap still holds
    finally:
        for pc in (real, late, *abandoned):
            await pc.close()


async def test_one_client_cannot_hold_more_than_its_share(live_server):
    server = await live_server(max_sessions=4, max_sessions_per_client=1)
    first, _, _ = await connect(server.url, "video")
    second = RTCPeerConnection(rtc_configuration())
    try:
        status, reply = await post(f"{server.url}/offer", json={"sdp": await offer_sdp(second, "video"), "type": "offer"})
        assert status == 429 and "already holds 1" in reply["error"]  # the server itself has room for three more
    finally:
        await first.close()
        await second.close()


def test_sessions_still_connecting_have_a_cap_of_their_own():
    from types import SimpleNamespace

    from s2v.server.session import SessionRegistry

    registry = SessionRegistry(max_sessions=2, max_connecting=2)
    for i in range(2):
        registry.add(SimpleNamespace(id=f"c{i}", state="connecting", client=""))
    with pytest.raises(Exception, match="still connecting"):
        registry.add(SimpleNamespace(id="c2", state="connecting", client=""))
    assert registry.may_go_live()
    registry._sessions["c0"].state = "live"
    registry._sessions["c1"].state = "live"
    assert not registry.may_go_live()  # a third peer that connects now is turned away
    with pytest.raises(Exception, match="capacity"):
        registry.add(SimpleNamespace(id="c3", state="connecting", client=""))


async def _no_sessions(url: str) -> bool:
    return (await health(url))["sessions"] == 0


async def test_uploads_too_large_or_not_a_photo_are_refused(live_server):
    server = await live_server(max_upload_bytes=50_000)
    status, reply = await post(f"{server.url}/avatars", data=os.urandom(60_000))
    assert status == 413 and "limit" in reply["error"]
    status, reply = await post(f"{server.url}/avatars", data=b"this is not an image")
    assert status == 422 and "image" in reply["error"]
    status, reply = await post(f"{server.url}/avatars", data=b"")
    assert status == 400


@pytest.mark.parametrize("headers, body, avatars, offer", [
    ({"Content-Type": "multipart/form-data"}, b"--x\r\n\r\n", 400, 415),  # no boundary
    ({"Content-Type": "multipart/form-data; boundary="}, b"--\r\n", 400, 415),  # an empty one
    ({"Content-Encoding": "gzip", "Content-Type": "application/json"}, b'{"sdp": "v=0"}', 400, 400),  # not gzip
    ({"Content-Type": "text/plain"}, b'{"sdp": "v=0"}', 422, 415),  # what a page on another site may send unasked
])
@pytest.mark.parametrize("path", ["/avatars", "/offer"])
async def test_bodies_that_cannot_be_read_are_refused(live_server, path, headers, body, avatars, offer):
    server = await live_server()
    status, reply = await post(f"{server.url}{path}", data=body, headers=headers)
    assert status == (avatars if path == "/avatars" else offer), reply
    assert reply["error"] and (await health(server.url))["sessions"] == 0


@pytest.mark.parametrize("path", ["/offer", "/avatars"])
async def test_a_body_that_never_arrives_times_out_with_408(live_server, path):
    server = await live_server(body_timeout_s=0.5)
    host, port = server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 1000\r\n\r\n{{\"sdp\": ".encode())  # ... and nothing more
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert b" 408 " in status_line


async def test_an_uploaded_photo_becomes_an_avatar_an_offer_can_name(live_server):
    server = await live_server()
    form = aiohttp.FormData()
    form.add_field("image", BUILTIN_PHOTO.read_bytes(), filename="me.jpg", content_type="image/jpeg")
    status, reply = await post(f"{server.url}/avatars", data=form)
    assert status == 200, reply
    pc = RTCPeerConnection(rtc_configuration())
    try:
        sdp = await offer_sdp(pc, "video")
        status, answer = await post(f"{server.url}/offer", json={"sdp": sdp, "type": "offer", "avatar": reply["avatar"]})
        assert status == 200 and answer["avatar"]["id"] == reply["avatar"]
    finally:
        await pc.close()


async def test_a_video_only_peer_gets_the_idle_avatar(live_server):
    server = await live_server(peer_timeout_s=2.0)  # its RTCP reports (every 0.5-1.5 s) must keep it alive
    pc, frames, _ = await connect(server.url, "video")
    try:
        await asyncio.sleep(3.0)
        assert frames.in_last(1.0) >= 22
        (stats,) = (await health(server.url))["live"]
        assert "session" not in stats  # a stranger learns no session ids
        assert stats["state"] == "idle" and stats["fps"] >= 22
    finally:
        await pc.close()


async def test_a_peer_that_never_connects_is_dropped(live_server):
    server = await live_server(connect_timeout_s=1.0)
    pc = RTCPeerConnection(rtc_configuration())
    status, _ = await post(f"{server.url}/offer", json={"sdp": await offer_sdp(pc, "video"), "type": "offer"})
    assert status == 200
    await pc.close()  # the answer is never applied: no ICE, no DTLS
    assert (await health(server.url))["sessions"] == 1
    assert await wait_for(lambda: _no_sessions(server.url), 4)


async def test_a_session_ends_at_its_time_limit(live_server):
    server = await live_server(session_time_limit_s=1.0)
    pc, frames, _ = await connect(server.url, "video")
    try:
        assert await wait_for(lambda: _no_sessions(server.url), 4)
        assert len(frames.times) > 0
    finally:
        await pc.close()


VANISHING_PEER = """
import asyncio, json, sys, urllib.request
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

async def main():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())
    pc.addTransceiver("video", direction="recvonly")
    pc.on("track", lambda track: asyncio.ensure_future(drain(track)))
    await pc.setLocalDescription(await pc.createOffer())
    body = json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}).encode()
    request = urllib.request.Request(sys.argv[1] + "/offer", body, {"Content-Type": "application/json"})
    reply = json.load(await asyncio.to_thread(urllib.request.urlopen, request))
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], reply["type"]))
    print(reply["session"], flush=True)
    await asyncio.sleep(3600)

async def drain(track):
    while True:
        await track.recv()

asyncio.run(main())
"""


async def test_a_peer_that_vanishes_is_cleaned_up_while_another_keeps_streaming(live_server):
    server = await live_server(peer_timeout_s=2.5)  # above aiortc's RTCP report interval (0.5-1.5 s)
    steady, frames, steady_reply = await connect(server.url, "video")
    peer = await asyncio.create_subprocess_exec(sys.executable, "-c", VANISHING_PEER, server.url,
                                                stdout=asyncio.subprocess.PIPE)
    try:
        vanished = (await asyncio.wait_for(peer.stdout.readline(), 20)).decode().strip()

        async def streaming() -> bool:
            live = {s.id: s.stats() for s in server.service.sessions}  # /healthz shows no session ids
            return live.get(vanished, {}).get("frames", 0) > 10

        assert await wait_for(streaming, 10)
        peer.send_signal(signal.SIGKILL)  # no BYE, no DTLS close: the peer is just gone

        async def gone() -> bool:
            return [s.id for s in server.service.sessions] == [steady_reply["session"]]

        assert await wait_for(gone, 8)
        await asyncio.sleep(1.0)
        assert frames.in_last(1.0) >= 22
    finally:
        if peer.returncode is None:
            peer.kill()
        await peer.wait()
        await steady.close()


async def test_the_websocket_signals_controls_and_reports(live_server):
    server = await live_server(stats_interval_s=0.3)
    pc = RTCPeerConnection(rtc_configuration())
    frames = FrameCounter()
    pc.on("track", frames.attach)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.url}/ws") as ws:
            await ws.send_json({"type": "interrupt"})
            assert (await ws.receive_json())["status"] == 409  # nothing to interrupt yet
            await ws.send_json({"type": "offer", "sdp": await offer_sdp(pc, "audio", "video"), "prompt": "calm"})
            answer = await ws.receive_json()
            assert answer["type"] == "answer", answer
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            await ws.send_json({"type": "prompt", "text": "lively, nodding"})
            await ws.send_json({"type": "interrupt"})
            await ws.send_json({"type": "dance"})
            seen: dict[str, dict] = {}
            while "stats" not in seen or seen["stats"]["frames"] < 5:
                message = await asyncio.wait_for(ws.receive_json(), 5)
                seen[message["type"]] = message
            assert seen["prompt"]["style"]["sway"] > 1 and seen["prompt"]["style"]["nod"] > 1
            assert "interrupted" in seen
            assert seen["error"]["status"] == 400 and "dance" in seen["error"]["error"]
            assert seen["stats"]["state"] in ("idle", "speaking") and seen["stats"]["session"] == answer["session"]
        # Closing the websocket ends its session.
        assert await wait_for(lambda: _no_sessions(server.url), 5)
    await pc.close()
    assert len(frames.times) > 0
    assert np.all(np.diff(frames.times) >= 0)


async def test_a_server_with_a_token_starts_nothing_without_it(live_server):
    server = await live_server(token="s3cret")
    bad_offer = {"sdp": "v=0 but not an SDP", "type": "offer"}
    status, reply = await post(f"{server.url}/offer", json=bad_offer)
    assert status == 401 and "token" in reply["error"]
    status, _ = await post(f"{server.url}/offer", json=bad_offer, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, _ = await post(f"{server.url}/avatars", data=b"not a photo")
    assert status == 401
    # With it, the request gets through to the checks behind (a 400 for the bad SDP, a 422 for the bad photo).
    status, _ = await post(f"{server.url}/offer", json=bad_offer, headers={"Authorization": "Bearer s3cret"})
    assert status == 400
    status, _ = await post(f"{server.url}/avatars?token=s3cret", data=b"not a photo")
    assert status == 422
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{server.url}/ws")
        assert refused.value.status == 401
        async with http.ws_connect(f"{server.url}/ws?token=s3cret") as ws:  # a browser's WebSocket sends no headers
            await ws.send_json({"type": "stop"})
        async with http.get(f"{server.url}/healthz") as response:
            assert response.status == 200  # health stays open for load balancers


async def test_a_session_whose_shutdown_fails_still_leaves_the_registry(live_server):
    server = await live_server()
    pc, _, reply = await connect(server.url, "video")
    try:
        (session,) = list(server.service.sessions)

        def broken() -> None:
            raise RuntimeError("a track that fails to stop")

        session.video_track.stop = broken
        await asyncio.wait_for(session.close("test"), 10)
        assert session.state == "closed" and len(server.service.sessions) == 0
        status, _ = await post(f"{server.url}/offer", json={"sdp": "v=0", "type": "offer"})
        assert status == 400  # admission works again: the failed session holds no slot
    finally:
        await pc.close()


async def test_a_failed_background_task_ends_its_session_and_says_why(live_server):
    server = await live_server()
    pc, _, _ = await connect(server.url, "video")
    try:
        (session,) = list(server.service.sessions)

        async def broken() -> float:
            raise RuntimeError("stats went wrong")

        session._last_report = broken  # the watchdog calls it about every second once the peer is live
        assert await wait_for(lambda: _no_sessions(server.url), 5)
        assert "_watchdog" in session.close_reason and "RuntimeError" in session.close_reason
    finally:
        await pc.close()


async def test_uploads_beyond_the_queue_are_503_and_the_loop_keeps_answering(live_server):
    import io

    from PIL import Image

    server = await live_server(upload_queue=2)
    photo = Image.open(BUILTIN_PHOTO)
    photos = []
    for quality in (90, 85, 80, 75):  # four different files: each is prepared afresh
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=quality)
        photos.append(buffer.getvalue())
    uploads = [asyncio.ensure_future(post(f"{server.url}/avatars", data=p)) for p in photos]
    await asyncio.sleep(0.3)
    started = time.monotonic()
    assert (await health(server.url))["ok"] and time.monotonic() - started < 0.5  # preparation is off the loop
    statuses = sorted(status for status, _ in await asyncio.gather(*uploads))
    assert statuses == [200, 200, 503, 503], statuses


async def test_pages_from_other_sites_cannot_open_the_websocket(live_server):
    server = await live_server(allowed_origins=("https://app.example.com",))
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{server.url}/ws", headers={"Origin": "https://evil.example.net"})
        assert refused.value.status == 403
        for origin in (server.url, "https://app.example.com", None):  # its own page, an allowed site, no browser
            async with http.ws_connect(f"{server.url}/ws", headers={"Origin": origin} if origin else {}) as ws:
                await ws.send_json({"type": "stop"})


async def test_metrics_and_readiness_follow_the_sessions(live_server):
    server = await live_server(max_sessions=1)

    async def scrape() -> dict[str, float]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/metrics") as response:
                assert response.status == 200 and response.content_type == "text/plain"
        return await scrape_metrics(server.url)

    async def ready() -> int:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/readyz") as response:
                return response.status

    assert await ready() == 200
    pc, frames, _ = await connect(server.url, "video")
    refused = RTCPeerConnection(rtc_configuration())
    try:
        await asyncio.sleep(1.5)
        status, _ = await post(f"{server.url}/offer", json={"sdp": await offer_sdp(refused, "video"), "type": "offer"})
        assert status == 503 and await ready() == 503
        live = await scrape()
        assert live['s2v_sessions{state="live"}'] == 1 and live["s2v_sessions_admitted_total"] == 1
        assert live['s2v_refusals_total{route="/offer",status="503"}'] == 1
        assert live["s2v_frames_total"] >= 20 and live["s2v_fps_min"] >= 20
        assert live["process_cpu_seconds_total"] > 0
        # CPU by stage: the render thread's graph and frame conversion, and the threads of each kind
        assert live['s2v_render_cpu_seconds_total{part="graph"}'] > 0
        assert live['s2v_render_cpu_seconds_total{part="convert"}'] > 0
        for stage in ("event_loop", "render", "encode"):
            assert live[f's2v_cpu_seconds_total{{stage="{stage}"}}'] > 0, stage
    finally:
        await pc.close()
        await refused.close()
    assert await wait_for(lambda: _no_sessions(server.url), 5)
    after = await scrape()
    assert after['s2v_sessions{state="live"}'] == 0 and await ready() == 200
    assert after["s2v_frames_total"] >= live["s2v_frames_total"]  # the ended session's frames still count
    for key in ('s2v_cpu_seconds_total{stage="render"}', 's2v_render_cpu_seconds_total{part="graph"}'):
        assert after[key] >= live[key]  # ...and so does the CPU of its threads, ended since


def test_max_sessions_defaults_to_what_the_machine_holds(monkeypatch):
    import os

    from s2v.server.config import LOOP_SESSIONS, ServerConfig, measured_capacity

    for cores, at_512, at_720p in ((1, 3, 1), (2, 7, 2), (16, LOOP_SESSIONS, LOOP_SESSIONS)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert measured_capacity(512, 512) == at_512 and measured_capacity(1280, 720) == at_720p
    assert ServerConfig().max_sessions == measured_capacity(512, 512)  # 0, the default, means "measured"
    assert ServerConfig(max_sessions=3).max_sessions == 3
