"""`s2v bench`: N live sessions at once against one server, each a real WebRTC peer streaming speech, measured.

Starts `s2v serve` in its own process (or uses `--server`), then opens the sessions a fifth of a second apart
from this one process, each sending the same recorded speech (looped to `--seconds`) paced as a microphone
would. It prints, per session, what the client received (fps, the worst second, onset-to-lips latency, A/V
offset) and what the server counted (frames late and filled, render time), and for the server as a whole the
CPU it used per live session and its memory, read from its /metrics. The load client shares the machine: it
decodes every session's video, which costs it about as much as the server's encoding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from s2v.audio.files import read_audio, write_wav
from s2v.client.live import Call, ClientConfig, call, measure

log = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    sessions: int = field(default=2, metadata={"help": "live sessions at once"})
    seconds: float = field(default=30.0, metadata={"help": "speech each session streams (the WAV is looped)"})
    audio: Path | None = field(default=None, metadata={"help": "speech to stream, any file PyAV reads (required)"})
    server: str | None = field(default=None, metadata={"help": "an already running server; default: start "
                                                               "`s2v serve` on a free port for the run"})
    stats: Path | None = field(default=None, metadata={"help": "also write the results to this JSON file"})
    token: str | None = field(default=None, metadata={"help": "the server's --token, if it has one (S2V_TOKEN)"})


async def scrape_metrics(base: str) -> dict[str, float]:
    """The server's /metrics as {sample name with labels: value}."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/metrics") as response:
            response.raise_for_status()
            text = await response.text()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


async def _session(config: ClientConfig, delay_s: float) -> Call:
    await asyncio.sleep(delay_s)
    return await call(config)


def _measured(done: Call) -> dict[str, Any]:
    stats = measure(done.received, done.sent, done.started)
    server = done.server or {}
    stats.update({k: server.get(k) for k in ("late", "filled", "dropped", "render_ms_p50", "render_ms_p95")})
    return stats


async def run_load(config: BenchConfig, base: str, audio: Path) -> dict[str, Any]:
    """The sessions at once against `base`; per-session numbers and the server's CPU and memory."""
    client = ClientConfig(server=base, audio=audio, tail_s=1.0, token=config.token)
    before, t0 = await scrape_metrics(base), time.monotonic()
    calls = await asyncio.gather(*(_session(client, 0.2 * i) for i in range(config.sessions)),
                                 return_exceptions=True)
    after, wall = await scrape_metrics(base), time.monotonic() - t0
    cpu = after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"]
    failed = [f"{type(c).__name__}: {c}" for c in calls if isinstance(c, BaseException)]
    # measured once every call has ended: the analysis of a long call holds this process's event loop for
    # seconds, and the sessions still receiving would read that stall as frames arriving late
    measured = [_measured(c) for c in calls if not isinstance(c, BaseException)]
    live_s = LEAD_S + config.seconds + 1.0  # each session's length; the run's wall time also holds set-up and stagger
    return {
        "sessions": config.sessions, "seconds": config.seconds, "failed": failed, "per_session": measured,
        "server_cpu_cores": round(cpu / wall, 3),
        "server_cpu_per_session": round(cpu / (live_s * max(1, len(measured))), 3),
        "server_rss_mb": round(after["process_resident_memory_bytes"] / 2**20, 1),
        "fps_min_1s": min((s.get("fps_min_1s") or 0 for s in measured), default=None),
        "filled": sum(s.get("filled") or 0 for s in measured),
        "onset_latency_ms_p50": _median([s.get("onset_latency_ms") for s in measured]),
        "cpu_ms_per_frame": cpu_by_stage(before, after),
        "server_onset_ms_mean": _server_onset_ms(before, after),
    }


STAGE_KEYS = {  # what the bench prints: /metrics sample names
    "graph": 's2v_render_cpu_seconds_total{part="graph"}',
    "paste and upkeep": 's2v_render_cpu_seconds_total{part="rest"}',
    "colour conversion and resampling": 's2v_render_cpu_seconds_total{part="convert"}',
    "encoders (VP8, Opus)": 's2v_cpu_seconds_total{stage="encode"}',
    "event loop (RTP, SRTP, ICE, pacing)": 's2v_cpu_seconds_total{stage="event_loop"}',
    "decoders (incoming audio)": 's2v_cpu_seconds_total{stage="decode"}',
    "other threads": 's2v_cpu_seconds_total{stage="other"}',
}


def _server_onset_ms(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Mean speech onset -> lips as the server timed it (without the network and the client's buffers)."""
    key = "s2v_onset_latency_seconds_{}"
    count = after.get(key.format("count"), 0.0) - before.get(key.format("count"), 0.0)
    if count <= 0:
        return None
    return round(1000 * (after[key.format("sum")] - before.get(key.format("sum"), 0.0)) / count, 1)


def cpu_by_stage(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Server CPU ms per video frame sent, by stage, between two scrapes of /metrics."""
    frames = after.get("s2v_frames_total", 0.0) - before.get("s2v_frames_total", 0.0)
    if frames <= 0:
        return {}
    return {stage: round((after[key] - before.get(key, 0.0)) * 1000 / frames, 3)
            for stage, key in STAGE_KEYS.items() if key in after}


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.median(present)) if present else None


LEAD_S = 1.5  # silence before the speech, so that the onset-to-lips latency has an onset to start from


def _looped(audio: Path, seconds: float, folder: Path) -> Path:
    """`audio` repeated to `seconds` after LEAD_S of silence, as a 48 kHz WAV the client sends."""
    pcm = read_audio(audio, 48000)
    if len(pcm) == 0:
        raise ValueError(f"{audio} holds no audio")
    out = folder / "speech.wav"
    lead = np.zeros(int(LEAD_S * 48000), np.float32)
    write_wav(out, np.concatenate([lead, np.resize(pcm, int(seconds * 48000))]), 48000)
    return out


def start_server(sessions: int, token: str | None) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "s2v.cli", "serve", "--port", "0", "--device", "cpu",
               "--max-sessions", str(sessions), "--max-connecting", str(sessions),
               "--max-sessions-per-client", str(sessions)]  # every session comes from this one address
    server = subprocess.Popen(command + (["--token", token] if token else []), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if not line.startswith("s2v serving on "):
        server.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return server, line.split()[3].rstrip("/")


def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Blocking entry point of `s2v bench`: start the server if needed, run the load, print a table."""
    if config.audio is None:
        raise ValueError("--audio is required: speech to stream (any file PyAV reads)")
    server = None
    with tempfile.TemporaryDirectory(prefix="s2v-bench-") as tmp:
        audio = _looped(config.audio, config.seconds, Path(tmp))
        base = config.server.rstrip("/") if config.server else None
        if base is None:
            server, base = start_server(config.sessions, config.token)
        try:
            result = asyncio.run(run_load(config, base, audio))
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
    print(table(result))
    if config.stats is not None:
        config.stats.write_text(json.dumps(result, indent=2, default=str))
    return result


def table(result: dict[str, Any]) -> str:
    rows = ["| session | fps | worst second | onset → lips ms | A/V ms | late | filled | render ms p50 / p95 |",
            "|---|---|---|---|---|---|---|---|"]
    for i, s in enumerate(result["per_session"]):
        rows.append(f"| {i} | {s.get('fps')} | {s.get('fps_min_1s')} | {s.get('onset_latency_ms')} | "
                    f"{s.get('av_offset_ms')} | {s.get('late')} | {s.get('filled')} | "
                    f"{s.get('render_ms_p50')} / {s.get('render_ms_p95')} |")
    rows.append(f"\n{result['sessions']} sessions × {result['seconds']:g} s: server CPU {result['server_cpu_cores']} "
                f"cores in all, {result['server_cpu_per_session']} per live session; RSS {result['server_rss_mb']} MB"
                + (f"; failed: {result['failed']}" if result["failed"] else ""))
    if result.get("server_onset_ms_mean") is not None:
        rows.append(f"speech onset -> lips as the server timed it: {result['server_onset_ms_mean']} ms mean "
                    f"(the client's p50 above adds the network and its own buffers: "
                    f"{result['onset_latency_ms_p50']} ms)")
    if result.get("cpu_ms_per_frame"):
        stages = result["cpu_ms_per_frame"]
        rows.append(f"server CPU per frame sent, {sum(stages.values()):.2f} ms: "
                    + ", ".join(f"{stage} {ms:.2f}" for stage, ms in stages.items()))
    return "\n".join(rows)
