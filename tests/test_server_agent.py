"""A voice agent drives the avatar over /agent: TTS pushed faster than real time, a real aiortc viewer, playback
events, barge-in, and the bad input an agent can send."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest

from s2v.client import analysis
from s2v.client.agent import AgentClient, AgentError
from s2v.client.agent_bench import rest_after_clear
from s2v.client.live import SEND_RATE, Received, audio_timeline, collect_audio, collect_video, measure
from tests.conftest import TTS_RATE

CHUNK_S = 0.1
SPEEDUP = 5  # the agent pushes 100 ms of audio every 20 ms


async def _push(agent: AgentClient, stereo: np.ndarray) -> None:
    step = int(CHUNK_S * TTS_RATE)
    for i in range(0, len(stereo), step):
        await agent.push_audio(stereo[i : i + step].reshape(-1), TTS_RATE, channels=2)
        await asyncio.sleep(CHUNK_S / SPEEDUP)


class Viewer:
    """What the agent's own aiortc viewer received, with arrival times, and each event with its arrival time."""

    def __init__(self, agent: AgentClient) -> None:
        self.agent = agent
        self.got = Received()
        self.tasks: list[asyncio.Task] = []
        self.events: list[tuple[float, dict]] = []

    def on_track(self, track) -> None:
        region = analysis.mouth_region(self.agent.avatar)
        collect = collect_video(track, self.got, region, None) if track.kind == "video" else \
            collect_audio(track, self.got, None)
        self.tasks.append(asyncio.ensure_future(collect))

    async def _listen(self) -> None:
        async for event in self.agent.events():
            self.events.append((time.monotonic(), event))

    async def wait(self, kind: str, after: float = 0.0, **match) -> tuple[float, dict]:
        """The first event of `kind` matching `match`, arrived after `after` and not waited for before, with its
        arrival time."""
        for _ in range(2000):
            for i, (at, event) in enumerate(self.events):
                if at > after and event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
                    del self.events[i]
                    return at, event
            await asyncio.sleep(0.01)
        pytest.fail(f"no {kind} {match} within 20 s")

    async def connected(self) -> None:
        self.tasks.append(asyncio.ensure_future(self._listen()))
        for _ in range(200):
            if self.agent.viewer.connectionState == "connected":
                return
            await asyncio.sleep(0.05)
        pytest.fail("the viewer never connected")

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()


async def test_agent_drives_the_avatar_in_sync_and_a_clear_lands_within_frames(live_server, tts_24k):
    server = await live_server()
    tts = np.repeat(tts_24k[:, None], 2, axis=1)  # as stereo, which the server mixes down
    duration = len(tts) / TTS_RATE
    agent = AgentClient(server.url)
    viewer = Viewer(agent)
    await agent.connect(on_track=viewer.on_track)
    await viewer.connected()
    await asyncio.sleep(1.0)  # idle first: the mouth at rest is measured here

    pushed = time.monotonic()
    await _push(agent, tts)
    segment = await agent.end_segment()
    push_s = time.monotonic() - pushed
    started_at, started = await viewer.wait("playback_started", segment=segment)
    finished_at, finished = await viewer.wait("playback_finished", segment=segment)
    played_s = finished_at - started_at
    assert push_s < duration / 3, "the agent pushed faster than real time"
    assert started == {"type": "playback_started", "segment": segment}
    assert finished["interrupted"] is False and finished["position_s"] == pytest.approx(duration, abs=0.01)
    assert played_s == pytest.approx(duration, abs=0.15), "started and finished are as far apart as the speech"

    await asyncio.sleep(1.0)
    pusher = asyncio.ensure_future(_push(agent, np.concatenate([tts, tts])))  # a long answer...
    _, second = await viewer.wait("playback_started")
    await asyncio.sleep(1.2)
    pusher.cancel()  # the TTS stops first: a chunk pushed after the clear would open a new segment
    await asyncio.gather(pusher, return_exceptions=True)
    cleared_at = time.monotonic()
    rest_frame = await agent.clear_buffer()  # ... that the user interrupts
    _, cut = await viewer.wait("playback_finished", segment=second["segment"])
    await asyncio.sleep(1.0)
    await agent.close()
    viewer.stop()

    got = viewer.got
    stats = measure(got, np.zeros(SEND_RATE), pushed)
    print("agent path:", {k: stats.get(k) for k in ("fps", "fps_min_1s", "av_offset_ms", "av_correlation")})
    assert stats["fps"] == pytest.approx(25, abs=0.5) and stats["fps_min_1s"] >= 23
    assert abs(stats["av_offset_ms"]) <= 40 and stats["av_correlation"] > 0.4
    assert cut["interrupted"] is True and 1.0 < cut["position_s"] < 1.6

    # From the received pictures and sound: the frame the server names comes soon, shows the mouth at rest, and
    # the queued speech is never heard after it.
    times = np.asarray(got.video_t)
    cavity = analysis.cavity(np.stack(got.mouth))
    idle = cavity[times < pushed]
    speaking = cavity[(times > pushed + 0.3) & (times < pushed + duration)]
    ceiling = np.quantile(idle, 0.95) + 0.25 * (np.quantile(speaking, 0.9) - np.quantile(idle, 0.95))
    rest = rest_after_clear(got, audio_timeline(got)[0], cavity, ceiling, cleared_at, rest_frame)
    print("clear:", rest)
    assert rest["clear_to_rest_frame_ms"] is not None and rest["clear_to_rest_frame_ms"] < 200
    assert rest["frames_at_rest"] == 1.0
    assert rest["sound_after"] < 0.05


async def test_the_server_speaks_typed_text_through_the_agent_path(live_server):
    server = await live_server()
    async with AgentClient(server.url) as agent:
        viewer = Viewer(agent)
        await agent.connect(on_track=viewer.on_track)
        await viewer.connected()
        segment = await agent.say("Hello, I am your avatar.")
        await viewer.wait("playback_started", segment=segment)
        _, finished = await viewer.wait("playback_finished", segment=segment)
        assert 1.0 < finished["position_s"] < 3.0
    viewer.stop()
    assert np.max(np.abs(np.concatenate(viewer.got.audio))) > 0.05  # the synthesised speech was heard


async def _raw(server, path: str) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    http = aiohttp.ClientSession()
    return http, await http.ws_connect(server.url + path)


async def test_bad_agent_input_gets_clear_errors_and_other_sessions_stay_untouched(live_server):
    server = await live_server(agent_buffer_s=5.0)
    async with AgentClient(server.url) as good, AgentClient(server.url) as bad:
        viewer = Viewer(good)
        await good.connect(on_track=viewer.on_track)
        await viewer.connected()
        await bad.connect()

        async def refusal(message: dict | bytes) -> str:
            if isinstance(message, bytes):  # a chunk has no id: its error comes as an event
                await bad._socket().send_bytes(message)
                return (await asyncio.wait_for(bad.wait_for("error"), 5))["error"]
            with pytest.raises(AgentError) as refused:
                await asyncio.wait_for(bad._request(message, "no reply but an error"), 5)
            return str(refused.value)

        assert "outside a segment" in await refusal(b"\0\0")
        assert "sample_rate" in await refusal({"type": "segment", "sample_rate": 0})
        assert "channels" in await refusal({"type": "segment", "sample_rate": 16000, "channels": 0})
        assert "end_segment without" in await refusal({"type": "end_segment"})
        assert "unknown message type" in await refusal({"type": "dance"})
        assert "at most 500 characters" in await refusal({"type": "prompt", "text": "x" * 5000})
        await bad._socket().send_str("{" * 100000)
        assert "not valid JSON" in (await asyncio.wait_for(bad.wait_for("error"), 5))["error"]
        await bad.push_audio(np.zeros(1600, np.int16), 16000)  # opens a segment
        assert "still open" in await refusal({"type": "segment", "sample_rate": 16000})
        assert "whole number" in await refusal(b"\0\0\0")
        # Ten minutes of audio in about a second: the first 5 s are queued, every later chunk refused.
        await asyncio.sleep(1.0)  # (past the new session's start-up, which costs the machine a burst of CPU)
        flood = time.monotonic()
        for i in range(600):
            await bad._socket().send_bytes(np.zeros(16000, np.int16).tobytes())
            await asyncio.sleep(flood + (i + 1) / 600 - time.monotonic())
        refused = 0
        try:
            while True:
                refused += "ahead of playback" in (await asyncio.wait_for(bad.wait_for("error"), 1.0))["error"]
        except asyncio.TimeoutError:
            pass
        assert 585 <= refused <= 595  # 5 s queued, plus what played out meanwhile
        stats = await asyncio.wait_for(bad.wait_for("stats"), 5)
        assert 0 < stats["buffered_s"] <= 5.0  # playing out at real time meanwhile

        # The other session went on at full rate all the while (the flood comes from this process too, and
        # shares its event loop).
        await asyncio.sleep(max(0.0, flood + 2.0 - time.monotonic()))
        arrivals = np.asarray(viewer.got.video_t)
        received = int(np.sum((arrivals >= flood) & (arrivals < flood + 2.0)))
        print("the other session received", received, "frames in the 2 s of the flood")
        assert received >= 46
    viewer.stop()


async def test_an_agent_that_vanishes_mid_segment_leaves_nothing_behind(live_server):
    server = await live_server()
    agent = AgentClient(server.url)
    viewer = Viewer(agent)
    await agent.connect(on_track=viewer.on_track)
    await viewer.connected()
    await agent.push_audio(np.zeros(48000, np.int16), 24000)  # a segment left open, 2 s queued
    assert len(server.service.sessions) == 1
    await agent._ws.close()  # gone without end_segment or stop
    for _ in range(50):
        if len(server.service.sessions) == 0:
            break
        await asyncio.sleep(0.1)
    assert len(server.service.sessions) == 0
    await agent.close()
    viewer.stop()


async def test_the_microphone_socket_does_not_take_agent_messages(live_server):
    server = await live_server()
    http, ws = await _raw(server, "/ws")
    await ws.send_json({"type": "segment", "sample_rate": 16000})
    assert "unknown message type" in (await ws.receive_json())["error"]
    await ws.send_bytes(b"\0\0")
    assert (await ws.receive_json())["status"] == 400
    await ws.close()
    await http.close()
