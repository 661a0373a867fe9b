"""A thousand hostile requests while a real session streams: every one answered 4xx, none a crash or a stall."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys

import aiohttp
from aiortc import RTCPeerConnection

from s2v.server.rtc import rtc_configuration
from tests.test_server_errors import connect, health, offer_sdp


def _hostile(rng: random.Random, sdp: str) -> tuple[str, dict[str, str], bytes]:
    """(route, headers, body) of one generated bad request."""
    kind = rng.randrange(12)
    lines = sdp.split("\r\n")
    if kind == 0:
        return "/offer", {"Content-Type": "application/json"}, os.urandom(rng.randrange(1, 2000))
    if kind == 1:
        depth = rng.choice([10, 1000, 50_000])
        return "/offer", {"Content-Type": "application/json"}, b"[" * depth + b"]" * depth
    if kind == 2:
        return "/offer", {"Content-Type": "application/json"}, b'{"sdp": ' + b"7" * rng.randrange(4000, 9000) + b"}"
    if kind == 3:  # a real offer with lines dropped, doubled or shuffled
        edited = [line for line in lines if rng.random() > 0.15]
        edited += rng.sample(lines, k=min(3, len(lines)))
        if rng.random() < 0.3:
            rng.shuffle(edited)
        return "/offer", {"Content-Type": "application/json"}, json.dumps({"sdp": "\r\n".join(edited)}).encode()
    if kind == 4:  # a real offer with one field set to nonsense
        body = {"sdp": sdp, "type": "offer", rng.choice(["avatar", "prompt", "type"]): rng.choice(
            [None, 7, [], {}, "x" * 5000, "../../etc/passwd", "\x00"])}
        return "/offer", {"Content-Type": "application/json"}, json.dumps(body).encode()
    if kind == 5:
        return "/offer", {"Content-Type": rng.choice(["text/plain", "multipart/form-data", ""])}, b'{"sdp": "v=0"}'
    if kind == 6:
        return "/avatars", {}, os.urandom(rng.randrange(0, 5000))
    if kind == 7:  # an image header and garbage after it
        return "/avatars", {}, rng.choice([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a"]) + os.urandom(500)
    if kind == 8:
        return "/avatars", {"Content-Type": "multipart/form-data; boundary=" + rng.choice(["", "x", "-" * 80])}, \
            os.urandom(300)
    if kind == 9:
        return "/offer", {"Content-Type": "application/json", "Content-Encoding": rng.choice(["gzip", "br", "x"])}, \
            os.urandom(100)
    if kind == 10:
        return "/offer", {"Content-Type": "application/json"}, json.dumps(
            {"sdp": "v=0\r\n" + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * rng.randrange(1, 300)}).encode()
    return "/offer", {"Content-Type": "application/json"}, json.dumps(rng.choice([[], 1, "x", None, {"sdp": 1}])).encode()


async def test_a_thousand_hostile_requests_are_refused_while_a_session_keeps_streaming(live_server):
    server = await live_server(max_sessions=2, upload_queue=2, rate_limit=0)  # every request reaches its parser
    pc, frames, _ = await connect(server.url, "video")
    template = RTCPeerConnection(rtc_configuration())
    sdp = await offer_sdp(template, "audio", "video")
    await template.close()
    rng = random.Random(11)
    statuses: dict[int, int] = {}
    seconds: list[int] = []

    async def watch() -> None:  # frames the live peer received in each second of the flood
        await asyncio.sleep(0.6)  # (it has just connected: its first second is not a whole one)
        while True:
            await asyncio.sleep(0.5)
            seconds.append(frames.in_last(1.0))

    watcher = asyncio.ensure_future(watch())
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            for _ in range(1000):  # a connection each: one that aiohttp drops must not fail the next request
                route, headers, body = _hostile(rng, sdp)
                try:
                    async with http.post(f"{server.url}{route}", data=body, headers=headers) as response:
                        status = response.status
                        if status == 200:  # an edited offer aiortc could still answer: hang it up
                            session = (await response.json())["session"]
                            await server.service.sessions.get(session).close("test")
                except aiohttp.ServerDisconnectedError:
                    # aiohttp itself drops the connection when a body fails its Content-Encoding while it drains it
                    assert "Content-Encoding" in headers
                    status = 0
                statuses[status] = statuses.get(status, 0) + 1
                await asyncio.sleep(0.005)  # ~100 requests a second from this one client
            for i in range(50):  # both websockets take the same garbage, a socket each
                _, _, body = _hostile(rng, sdp)
                async with http.ws_connect(f"{server.url}{('/ws', '/agent')[i % 2]}") as ws:
                    await ws.send_str(body.decode("latin-1"))
                    reply = json.loads((await ws.receive()).data)
                    assert reply["type"] in ("error", "answer"), reply
                    if reply["type"] == "answer":
                        await server.service.sessions.get(reply["session"]).close("test")
        assert set(statuses) <= {0, 200, 400, 404, 408, 413, 415, 422, 429, 503}, statuses
        assert sum(statuses.values()) == 1000 and statuses.get(200, 0) < 50
        # the live session kept its rate and never stalled. Its receiver shares this event loop with the flood, so
        # one slow second says as much about the client as the server: in full runs on 2 cores the worst second
        # was 19 once in five and 15 once in four, with 24-25 around it. A blocked server loop (as a 2^31 RTP jump
        # or a 49 MP upload once caused) gives seconds near 0 and a lower mean.
        assert sum(seconds) / len(seconds) >= 23.5 and min(seconds) >= 12, seconds
        assert (await health(server.url))["ok"]
    finally:
        watcher.cancel()
        await pc.close()


FLOOD = """
import asyncio, collections, json, sys
import aiohttp

BODY = b"[" * 50000 + b"]" * 50000  # costly to refuse: JSON nested too deep to parse

async def main(url, count):
    statuses = collections.Counter()
    async with aiohttp.ClientSession() as http:
        async def one():
            async with http.post(url + "/offer", data=BODY, headers={"Content-Type": "application/json"}) as r:
                await r.read()
                statuses[r.status] += 1
        for start in range(0, count, 16):  # as fast as it goes, 16 at a time
            await asyncio.gather(*(one() for _ in range(min(16, count - start))))
    print(json.dumps(statuses))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_an_unpaced_flood_from_another_process_is_refused_cheaply_while_a_session_streams(live_server):
    server = await live_server(rate_limit=10, rate_burst=30)
    pc, frames, _ = await connect(server.url, "video")
    seconds: list[int] = []

    async def watch() -> None:
        await asyncio.sleep(0.6)
        while True:
            await asyncio.sleep(0.5)
            seconds.append(frames.in_last(1.0))

    watcher = asyncio.ensure_future(watch())
    try:
        flood = await asyncio.create_subprocess_exec(sys.executable, "-c", FLOOD, server.url, "8000",
                                                     stdout=subprocess.PIPE)
        out, _ = await asyncio.wait_for(flood.communicate(), 120)
        statuses = {int(k): v for k, v in json.loads(out).items()}
        async with aiohttp.ClientSession() as http:  # what is not limited still answers at once
            async with http.get(f"{server.url}/healthz") as response:
                assert response.status == 200
    finally:
        watcher.cancel()
        await pc.close()
    print("flood:", statuses, "live session, frames per second:", min(seconds), "-", max(seconds))
    assert statuses.get(400, 0) <= 30 + 10 * len(seconds) and statuses[429] >= 7000
    assert set(statuses) <= {400, 429}
    assert min(seconds) >= 15, seconds  # not starved (the flooding process takes one of the two cores itself)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def test_sessions_that_come_and_go_leave_no_memory_behind(live_server):
    from tests.test_server_errors import _no_sessions, wait_for

    server = await live_server(max_sessions=2)

    async def cycle() -> None:
        pc, frames, _ = await connect(server.url, "video")
        while frames.in_last(1.0) < 3:  # a few frames streamed, then hang up
            await asyncio.sleep(0.05)
        await pc.close()
        assert await wait_for(lambda: _no_sessions(server.url), 5)

    for _ in range(10):  # warm up: first-use allocations (codecs, pools) are not leaks
        await cycle()
    before = _rss_mb()
    for _ in range(50):
        await cycle()
    grown = _rss_mb() - before
    assert grown < 20, f"RSS grew {grown:.1f} MB over 50 sessions"
