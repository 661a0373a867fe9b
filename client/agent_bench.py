"""`s2v agent`: drive a server's `/agent` socket as a voice agent would, watch the avatar, print the numbers.

One speech file is pushed as TTS segments `--speedup` times faster than real time and received by a real
aiortc viewer: received fps, the A/V offset of the returned audio and mouth, and the playback events with
their positions. Then `--interrupts` more answers are cut into their playback with `clear`, each later in
the sentence than the last, and each is timed from sending the clear to the arrival of the frame the
server names as the first at rest; the received pictures and sound check that claim (the mouth's dark
inside is back to its idle size from that frame, and no queued speech is heard after it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s2v.audio.files import read_audio
from s2v.contract import CONTRACT
from s2v.client import analysis
from s2v.client.agent import AgentClient
from s2v.client.live import SEND_RATE, Received, audio_timeline, collect_audio, collect_video, measure
from s2v.server.tracks import VIDEO_TICKS_PER_FRAME
from s2v.client.load import start_server

log = logging.getLogger(__name__)

TTS_RATE = 24000
CHUNK_S = 0.1


@dataclass
class AgentBenchConfig:
    audio: Path | None = field(default=None, metadata={"help": "speech to push as the agent's TTS (any audio "
                                                               "file); default: a sentence by espeak-ng"})
    server: str | None = field(default=None, metadata={"help": "an already running server; default: start "
                                                               "`s2v serve` on a free port for the run"})
    token: str | None = field(default=None, metadata={"help": "the server's --token, if it has one (S2V_TOKEN)"})
    speedup: float = field(default=5.0, metadata={"help": "how much faster than real time the audio is pushed"})
    interrupts: int = field(default=5, metadata={"help": "answers cut short with clear, each timed"})
    interrupt_after_s: float = field(default=1.2, metadata={"help": "playback time before the first clear; each "
                                                                       "next one 0.17 s later"})
    stats: Path | None = field(default=None, metadata={"help": "also write the numbers to this JSON file"})


async def _push(agent: AgentClient, pcm: np.ndarray, speedup: float) -> None:
    step = int(CHUNK_S * TTS_RATE)
    for i in range(0, len(pcm), step):
        await agent.push_audio(pcm[i : i + step], TTS_RATE)
        await asyncio.sleep(CHUNK_S / speedup)


async def run_agent(config: AgentBenchConfig, base: str, pcm: np.ndarray) -> dict[str, Any]:
    """Everything measured against the server at `base`."""
    got = Received()
    tasks: list[asyncio.Task] = []
    events: list[tuple[float, dict[str, Any]]] = []
    agent = AgentClient(base, token=config.token)

    def on_track(track) -> None:
        region = analysis.mouth_region(agent.avatar or {})
        collect = collect_video(track, got, region, None) if track.kind == "video" else \
            collect_audio(track, got, None)
        tasks.append(asyncio.ensure_future(collect))

    async def listen() -> None:
        async for event in agent.events():
            events.append((time.monotonic(), event))

    async def next_event(kind: str, after: float) -> tuple[float, dict[str, Any]]:
        while True:
            found = [(t, e) for t, e in events if t >= after and e["type"] == kind]
            if found:
                return found[0]
            await asyncio.sleep(0.005)

    duration = len(pcm) / TTS_RATE
    await agent.connect(on_track=on_track)
    tasks.append(asyncio.ensure_future(listen()))
    try:
        while agent.viewer is not None and agent.viewer.connectionState != "connected":
            await asyncio.sleep(0.05)
        log.info("viewer connected; pushing %.1f s of speech %gx faster than real time", duration, config.speedup)
        await asyncio.sleep(1.0)
        pushed = time.monotonic()
        await _push(agent, pcm, config.speedup)
        await agent.end_segment()
        started_at, _ = await next_event("playback_started", pushed)
        finished_at, finished = await next_event("playback_finished", pushed)
        log.info("played %.2f s; now %d interruptions", finished_at - started_at, config.interrupts)
        await asyncio.sleep(0.5)
        clears = []
        for i in range(config.interrupts):
            begun = time.monotonic()
            pusher = asyncio.ensure_future(_push(agent, np.concatenate([pcm, pcm]), config.speedup))
            start, _ = await next_event("playback_started", begun)
            # Each cut lands on another phone: a clear that falls on a /b/ would otherwise look instantly "at rest".
            await asyncio.sleep(config.interrupt_after_s + 0.17 * i - (time.monotonic() - start))
            pusher.cancel()  # first: a push after the clear would open a new segment
            await asyncio.gather(pusher, return_exceptions=True)
            sent = time.monotonic()
            clears.append((sent, await agent.clear_buffer()))
            await asyncio.sleep(1.0)
    finally:
        await agent.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    stats = measure(got, np.zeros(SEND_RATE), pushed)
    times = np.asarray(got.video_t)
    cavity = analysis.cavity(np.stack(got.mouth))
    idle, speaking = cavity[times < pushed], cavity[(times > started_at + 0.2) & (times < finished_at)]
    ceiling = np.quantile(idle, 0.95) + 0.25 * (np.quantile(speaking, 0.9) - np.quantile(idle, 0.95))
    audio, _ = audio_timeline(got)
    cut = [rest_after_clear(got, audio, cavity, ceiling, sent, frame) for sent, frame in clears]
    latency = [c["clear_to_rest_frame_ms"] for c in cut]
    return {
        "fps": stats.get("fps"), "fps_min_1s": stats.get("fps_min_1s"), "av_offset_ms": stats.get("av_offset_ms"),
        "push_to_playback_started_ms": round(1000 * (started_at - pushed)),
        "played_s": round(finished_at - started_at, 3), "speech_s": round(duration, 3),
        "finished_position_s": finished["position_s"],
        "clear_to_rest_frame_ms": latency, "clear_to_rest_frame_p50_ms": _median(latency),
        "rest_frames_look_at_rest": [c["frames_at_rest"] for c in cut],
        "sound_after_rest_frame": [c["sound_after"] for c in cut],
    }


def rest_after_clear(got: Received, audio: np.ndarray, cavity: np.ndarray, ceiling: float, sent: float,
                     frame: int) -> dict[str, Any]:
    """One clear, seen by the viewer: when the frame the server named as the first at rest arrived, whether the
    ten frames from it look at rest (their mouth's dark inside no larger than at idle), and how loud the audio
    from that frame on is against the speech before it.

    Frames are found by their RTP timestamp (aiortc starts a received stream's at 0, and the server's first
    frame is frame 0)."""
    index = np.asarray(got.video_pts) // VIDEO_TICKS_PER_FRAME
    arrived = np.asarray(got.video_t)[index == frame]
    after = (index >= frame) & (index < frame + 10)
    per_frame = SEND_RATE // CONTRACT.audio.fps
    start = frame * per_frame
    before, later = audio[start - SEND_RATE : start], audio[start + per_frame : start + SEND_RATE // 2]
    loudness = np.sqrt(np.mean(later**2)) / max(1e-9, float(np.sqrt(np.mean(before**2)))) if len(later) else None
    return {
        "clear_to_rest_frame_ms": round(1000 * (float(arrived[0]) - sent)) if len(arrived) else None,
        "frames_at_rest": round(float(np.mean(cavity[after] <= ceiling)), 2) if after.any() else None,
        "sound_after": round(float(loudness), 4) if loudness is not None else None,
    }


def _median(values: list[int | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.median(kept)) if kept else None


def _speech(config: AgentBenchConfig, folder: Path) -> np.ndarray:
    path = config.audio
    if path is None:
        import subprocess

        path = folder / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), "Maybe Bob will bring apples, bread and a few "
                        "warm blue boots to the movie, and then we all go home."], check=True)
    pcm = read_audio(path, TTS_RATE)
    return (0.7 * pcm / max(1e-6, float(np.abs(pcm).max())) * 32767).astype(np.int16)


def run_agent_bench(config: AgentBenchConfig) -> dict[str, Any]:
    """Blocking entry point of `s2v agent`: start the server if needed, measure, print JSON."""
    with tempfile.TemporaryDirectory() as folder:
        pcm = _speech(config, Path(folder))
        server = None
        base = config.server
        if base is None:
            server, base = start_server(1, config.token)
        try:
            result = asyncio.run(run_agent(config, base.rstrip("/"), pcm))
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
    if config.stats is not None:
        config.stats.write_text(json.dumps(result, indent=2))
    return result
