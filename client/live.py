"""`s2v client`: stream a WAV to a server as if spoken live, record the avatar that comes back, measure it.

The WAV leaves in 20 ms packets paced on the wall clock, exactly like a microphone. What comes
back is written to an MP4 and measured: received fps, the delay from the speech onset (when the
first loud sample was sent) to the first received frame whose mouth moves (when it arrived), and
the A/V offset between the returned audio and the returned mouth motion.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from s2v.audio.files import read_audio
from s2v.client import analysis
from s2v.client.recorder import Mp4Recorder
from s2v.server.rtc import rtc_configuration, set_receive_prefetch

log = logging.getLogger(__name__)

SEND_RATE = 48000  # Opus's own rate: aiortc sends each 20 ms frame at once, with no resampler delay
PACKET = 960
VIDEO_HOLD_S = 0.04  # aiortc releases a video frame when the next one starts arriving (one frame at 25 fps)
AUDIO_HOLD_S = 0.02  # ... and, with a one-packet prefetch, an audio packet when the next one arrives


@dataclass
class ClientConfig:
    server: str = field(default="http://127.0.0.1:8080", metadata={"help": "server base URL"})
    audio: Path | None = field(default=None, metadata={"help": "WAV (or any audio file) to send as live speech"})
    record: Path | None = field(default=None, metadata={"help": "write the returned video and audio to this MP4"})
    stats: Path | None = field(default=None, metadata={"help": "also write the measurements to this JSON file"})
    photo: Path | None = field(default=None, metadata={"help": "upload this photo and use it as the avatar"})
    avatar_id: str | None = field(default=None, metadata={"help": "avatar id from POST /avatars (default: the "
                                                                   "server's own avatar)"})
    prompt: str | None = field(default=None, metadata={"help": "style prompt, e.g. 'calm, nodding'"})
    token: str | None = field(default=None, metadata={"help": "the server's --token, if it has one (S2V_TOKEN)"})
    tail_s: float = field(default=1.0, metadata={"help": "keep receiving this long after the audio has been sent"})
    connect_timeout_s: float = field(default=15.0, metadata={"help": "give up if the call is not up by then"})


class PacedAudioTrack(MediaStreamTrack):
    """Mono PCM released in 20 ms frames on the wall clock, then silence; remembers when it started."""

    kind = "audio"

    def __init__(self, pcm48k: np.ndarray) -> None:
        super().__init__()
        self._pcm = (np.clip(pcm48k, -1.0, 1.0) * 32767.0).astype(np.int16)
        self._index = 0
        self.started: float | None = None  # monotonic time at which sample 0 was sent

    @property
    def duration_s(self) -> float:
        return len(self._pcm) / SEND_RATE

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.started is None:
            self.started = time.monotonic()
        delay = self.started + self._index * PACKET / SEND_RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        chunk = self._pcm[self._index * PACKET : (self._index + 1) * PACKET]
        chunk = np.pad(chunk, (0, PACKET - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SEND_RATE
        frame.pts = self._index * PACKET
        frame.time_base = fractions.Fraction(1, SEND_RATE)
        self._index += 1
        return frame


@dataclass
class Received:
    """What came back, with monotonic arrival times."""

    video_t: list[float] = field(default_factory=list)
    video_pts: list[int] = field(default_factory=list)
    mouth: list[np.ndarray] = field(default_factory=list)
    audio_t: list[float] = field(default_factory=list)
    audio_pts: list[int] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)  # mono float 48 kHz per frame


async def collect_video(track: MediaStreamTrack, got: Received, region: tuple[int, int, int, int],
                         recorder: Mp4Recorder | None) -> None:
    x0, y0, x1, y1 = region
    try:
        while True:
            frame = await track.recv()
            got.video_t.append(time.monotonic())
            got.video_pts.append(int(frame.pts))
            got.mouth.append(frame.to_ndarray(format="rgb24")[y0:y1, x0:x1].copy())
            if recorder is not None:
                recorder.add(frame)
    except MediaStreamError:
        pass


async def collect_audio(track: MediaStreamTrack, got: Received, recorder: Mp4Recorder | None) -> None:
    try:
        while True:
            frame = await track.recv()
            got.audio_t.append(time.monotonic())
            got.audio_pts.append(int(frame.pts))
            samples = frame.to_ndarray().reshape(-1, len(frame.layout.channels)).astype(np.float32) / 32768.0
            got.audio.append(samples.mean(axis=1))
            if recorder is not None:
                recorder.add(frame)
    except MediaStreamError:
        pass


class ClientError(RuntimeError):
    """The server refused or could not be reached; the message says which and why."""


async def _post_json(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> dict[str, Any]:
    try:
        async with http.post(url, **kwargs) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                raise ClientError(f"{url}: {response.status} {body.get('error', body)}")
            return body
    except aiohttp.ClientError as exc:
        raise ClientError(f"{url}: {exc}") from exc


@dataclass
class Call:
    """Everything one call sent and received."""

    session: str
    avatar: dict[str, Any]  # the server's description of the avatar: size, face box, mouth box
    sent: np.ndarray  # mono float 48 kHz, as sent
    started: float  # monotonic time the first sample was sent
    received: Received
    server: dict[str, Any] | None  # the server's stats for this session just before hanging up


async def call(config: ClientConfig) -> Call:
    """Send the audio paced as live, receive the avatar until `tail_s` after the audio ended, hang up."""
    if config.audio is None:
        raise ValueError("ClientConfig.audio is required: the WAV to send")
    pcm48 = read_audio(config.audio, SEND_RATE)
    base = config.server.rstrip("/")
    source = PacedAudioTrack(pcm48)
    got = Received()
    pc = RTCPeerConnection(rtc_configuration())
    tasks: list[asyncio.Task] = []
    recorder: Mp4Recorder | None = None
    headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
    async with aiohttp.ClientSession(headers=headers) as http:
        avatar_id = config.avatar_id
        if config.photo is not None:
            avatar_id = (await _post_json(http, f"{base}/avatars", data=config.photo.read_bytes()))["avatar"]
        try:
            pc.addTrack(source)
            pc.addTransceiver("video", direction="recvonly")
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "audio":
                    set_receive_prefetch(transceiver.receiver, 1)
            connected, ended = asyncio.Event(), asyncio.Event()

            @pc.on("connectionstatechange")
            def on_state() -> None:
                if pc.connectionState == "connected":
                    connected.set()
                elif pc.connectionState in ("failed", "closed"):
                    ended.set()

            await pc.setLocalDescription(await pc.createOffer())
            request: dict[str, Any] = {"sdp": pc.localDescription.sdp, "type": "offer"}
            if avatar_id:
                request["avatar"] = avatar_id
            if config.prompt:
                request["prompt"] = config.prompt
            reply = await _post_json(http, f"{base}/offer", json=request)
            session = reply["session"]
            region = analysis.mouth_region(reply["avatar"])
            if config.record is not None:
                recorder = Mp4Recorder(config.record, tuple(reply["avatar"]["size"]))

            @pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                if track.kind == "video":
                    tasks.append(asyncio.ensure_future(collect_video(track, got, region, recorder)))
                else:
                    tasks.append(asyncio.ensure_future(collect_audio(track, got, recorder)))

            await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type=reply["type"]))
            try:
                await asyncio.wait_for(connected.wait(), config.connect_timeout_s)
            except asyncio.TimeoutError:
                raise ClientError(f"no media connection to {base} within {config.connect_timeout_s:g} s") from None
            log.info("session %s connected; streaming %.1f s of audio", session, source.duration_s)
            while source.started is None:
                await asyncio.sleep(0.01)
            remaining = source.started + source.duration_s + config.tail_s - time.monotonic()
            try:
                await asyncio.wait_for(ended.wait(), remaining)
                log.warning("session %s ended by the server before the audio was sent", session)
            except asyncio.TimeoutError:
                pass
            server_stats = await _session_stats(http, base, session)
        finally:
            await pc.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if recorder is not None:
                await asyncio.to_thread(recorder.close)
    assert source.started is not None
    return Call(session, reply["avatar"], pcm48, source.started, got, server_stats)


async def stream(config: ClientConfig) -> dict[str, Any]:
    """One call, measured."""
    done = await call(config)
    stats = measure(done.received, done.sent, done.started)
    stats.update(session=done.session, server=done.server)
    if config.record is not None:
        stats["record"] = str(config.record)
    return stats


async def _session_stats(http: aiohttp.ClientSession, base: str, session: str) -> dict[str, Any] | None:
    """The server's own counters for this session (render time, CPU); None if it is gone."""
    try:
        async with http.get(f"{base}/sessions/{session}") as response:
            return await response.json() if response.status == 200 else None
    except aiohttp.ClientError:
        return None


def media_times(arrivals: list[float], pts: list[int], rate: int, hold_s: float) -> np.ndarray:
    """Wall time each frame was due, from its RTP timestamp anchored on the least-delayed arrival.

    aiortc restarts every received track's timestamps at 0 and delivers a frame only when the
    next one starts arriving (`hold_s`); the earliest arrival minus that hold is the best anchor.
    """
    media = np.asarray(pts, np.float64) / rate
    return media + np.min(np.asarray(arrivals) - media) - hold_s


def audio_timeline(got: Received) -> tuple[np.ndarray, float]:
    """The received audio placed by its RTP timestamps (a lost packet stays a silent gap), and its start's wall time."""
    first = min(got.audio_pts)
    audio = np.zeros(max(p + len(a) for p, a in zip(got.audio_pts, got.audio)) - first, np.float32)
    for pts, samples in zip(got.audio_pts, got.audio):
        audio[pts - first : pts - first + len(samples)] = samples
    start = media_times(got.audio_t, got.audio_pts, SEND_RATE, AUDIO_HOLD_S)[int(np.argmin(got.audio_pts))]
    return audio, float(start)


def measure(got: Received, sent48k: np.ndarray, started: float) -> dict[str, Any]:
    """Received fps, speech-onset-to-lip-motion latency, A/V offset and the returned audio's alignment."""
    stats: dict[str, Any] = {"video_frames": len(got.video_t), "audio_frames": len(got.audio_t)}
    if len(got.video_t) < 10:
        stats["error"] = "too few video frames received to measure anything"
        return stats
    arrivals = np.asarray(got.video_t)
    stats["fps"] = round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), 2)
    per_second = np.histogram(arrivals, bins=np.arange(arrivals[0], arrivals[-1], 1.0))[0]
    stats["fps_min_1s"] = int(per_second.min()) if len(per_second) else None
    crops = np.stack(got.mouth)
    motion = analysis.frame_motion(crops)
    onset = analysis.speech_onset(sent48k, SEND_RATE)
    if onset is not None:
        sent_at = started + onset
        moved_at = analysis.motion_onset(arrivals, motion, sent_at)
        stats["speech_onset_s"] = round(onset, 3)
        stats["onset_latency_ms"] = round(1000.0 * (moved_at - sent_at)) if moved_at is not None else None
    if got.audio:
        audio, audio_start = audio_timeline(got)
        video_t = media_times(got.video_t, got.video_pts, 90000, VIDEO_HOLD_S)
        env = analysis.envelope(audio, SEND_RATE)
        env_t = audio_start + 0.01 * np.arange(len(env)) + 0.005
        quiet = np.interp(video_t, env_t, env) < 0.1 * env.max()
        rest = np.median(crops[quiet] if quiet.sum() >= 5 else crops, axis=0)
        offset, peak = analysis.lag(env_t, env, video_t, analysis.openness(crops, rest))
        stats["av_offset_ms"] = round(1000.0 * offset, 1)
        stats["av_correlation"] = round(peak, 3)
        delay, score = analysis.audio_alignment(sent48k, audio, SEND_RATE)
        stats["audio_latency_ms"] = round(1000.0 * (audio_start + delay - started))  # sent sample -> its echo due
        stats["audio_correlation"] = round(score, 3)
    return stats


def run_client(config: ClientConfig) -> dict[str, Any]:
    """Blocking entry point for `s2v client` (which prints the result): stream, measure, write --stats if asked."""
    try:
        stats = asyncio.run(stream(config))
    except ClientError as exc:
        raise SystemExit(f"s2v client: {exc}") from None
    if config.stats is not None:
        config.stats.write_text(json.dumps(stats, indent=2, default=str))
    return stats
