"""`s2v agent`: drive a server's `/agent` socket as a voice agent would, watch the avatar, print the numbers.

One speech file is pushed as TTS segments `--speedup` times faster than real time and received by a real
aiortc viewer: received fps, the A/V offset of the returned audio and mouth, and the playback events with
their positions. Then `--interrupts` more answers are cut `--interrupt-after-s` into their playback with
`clear`, and each is timed from the clear to the first received frame with the mouth at rest and to the
frame from which it stays at rest, read from the received pictures (the dark inside of the mouth).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s2v.audio.files import read_audio
from s2v.client import analysis
from s2v.client.agent import AgentClient
from s2v.client.live import SEND_RATE, Received, collect_audio, collect_video, measure
from s2v.client.load import start_server

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
    interrupt_after_s: float = field(default=1.2, metadata={"help": "playback time before each clear"})
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
        await asyncio.sleep(1.0)
        pushed = time.monotonic()
        await _push(agent, pcm, config.speedup)
        await agent.end_segment()
        started_at, _ = await next_event("playback_started", pushed)
        finished_at, finished = await next_event("playback_finished", pushed)
        await asyncio.sleep(0.5)
        clears = []
        for _ in range(config.interrupts):
            begun = time.monotonic()
            pusher = asyncio.ensure_future(_push(agent, np.concatenate([pcm, pcm]), config.speedup))
            start, _ = await next_event("playback_started", begun)
            await asyncio.sleep(config.interrupt_after_s - (time.monotonic() - start))
            clears.append(time.monotonic())
            await agent.clear_buffer()
            pusher.cancel()
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
    first = [analysis.settles(times, cavity, t, ceiling, hold=1) for t in clears]
    good = [analysis.settles(times, cavity, t, ceiling) for t in clears]
    ms = [[round(1000 * (r - t)) if r is not None else None for r, t in zip(rests, clears)] for rests in (first, good)]
    return {
        "fps": stats.get("fps"), "fps_min_1s": stats.get("fps_min_1s"), "av_offset_ms": stats.get("av_offset_ms"),
        "push_to_playback_started_ms": round(1000 * (started_at - pushed)),
        "played_s": round(finished_at - started_at, 3), "speech_s": round(duration, 3),
        "finished_position_s": finished["position_s"],
        "clear_to_first_rest_ms": ms[0], "clear_to_rest_for_good_ms": ms[1],
        "clear_to_first_rest_p50_ms": _median(ms[0]), "clear_to_rest_for_good_p50_ms": _median(ms[1]),
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
