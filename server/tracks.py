"""Output tracks: the avatar's pictures and the audio they were made from, released on one clock.

Both tracks take frame i from their outlet at `clock.release_time(i)`, so aiortc's RTCP sender
reports anchor audio and video to the same instant and the receiver's lip-sync holds. A frame
that is not ready by then (a slow render) is replaced, never waited for: the picture repeats and
the audio is silent for that slot, so latency cannot build up.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Generic, TypeVar

import av
import cv2
import numpy as np
from aiortc.mediastreams import VIDEO_TIME_BASE, MediaStreamError, MediaStreamTrack

from s2v.server.clock import SessionClock
from s2v.server.metrics import SessionMetrics

OUTPUT_RATE = 48000  # Opus runs at 48 kHz: sending 48 kHz spares aiortc a resampler and its delay
PACKET_SAMPLES = 960  # one 20 ms Opus packet; aiortc stamps all packets of one frame alike, so never more
AUDIO_TIME_BASE = fractions.Fraction(1, OUTPUT_RATE)
VIDEO_TICKS_PER_FRAME = 3600  # 90 kHz RTP clock at 25 fps

T = TypeVar("T")


class FrameOutlet(Generic[T]):
    """Frames handed from the render thread to one track, keyed by their index on the timeline."""

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int = 8) -> None:
        self._loop = loop
        self._capacity = capacity
        self._items: dict[int, T] = {}
        self._changed = asyncio.Event()

    def put_threadsafe(self, index: int, item: T) -> None:
        """From the render thread."""
        try:
            self._loop.call_soon_threadsafe(self.put, index, item)
        except RuntimeError:  # the loop closed (server shutdown) before the render thread stopped
            pass

    def put(self, index: int, item: T) -> None:
        """On the event loop."""
        self._items[index] = item
        while len(self._items) > self._capacity:  # a consumer that stopped must not hold memory
            del self._items[min(self._items)]
        self._changed.set()

    async def take(self, index: int, due: float, grace: float) -> tuple[T | None, int]:
        """Frame `index` at monotonic time `due` (or up to `grace` later); also how many older ones went stale."""
        await _sleep_until(due)
        stale = [i for i in self._items if i < index]
        for i in stale:
            del self._items[i]
        while index not in self._items:
            remaining = due + grace - time.monotonic()
            if remaining <= 0:
                return None, len(stale)
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return self._items.pop(index), len(stale)


async def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class AvatarVideoTrack(MediaStreamTrack):
    """25 fps avatar pictures; pts = index * 3600 on the 90 kHz clock."""

    kind = "video"

    def __init__(self, clock: SessionClock, outlet: FrameOutlet[av.VideoFrame], metrics: SessionMetrics,
                 first: av.VideoFrame) -> None:
        super().__init__()
        self._clock = clock
        self._outlet = outlet
        self._metrics = metrics
        self._last = first
        self._index = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._clock.started()
        index = self._catch_up(self._index)
        self._index = index + 1
        frame, stale = await self._outlet.take(index, self._clock.release_time(index), self._clock.period / 2)
        self._metrics.dropped += stale
        if frame is None:
            self._metrics.filled += 1
            frame = self._last
        self._last = frame
        frame.pts = index * VIDEO_TICKS_PER_FRAME
        frame.time_base = VIDEO_TIME_BASE
        frame.pict_type = av.video.frame.PictureType.NONE  # a repeated frame must not stay a forced keyframe
        self._metrics.sent_video()
        return frame

    def _catch_up(self, index: int) -> int:
        """If the encoder fell behind by more than a frame, jump to the frame due now.

        Video timestamps follow pts, so a jump is a clean skip; sending old frames late instead
        would put them on the wire with stale timestamps and throw the receiver's sync off.
        """
        due_now = int((self._clock.now() - self._clock.release_time(0)) / self._clock.period)
        if due_now > index + 1:
            return due_now
        return index


class AvatarAudioTrack(MediaStreamTrack):
    """The audio of each avatar frame, 48 kHz mono s16, as two 20 ms halves released with the picture.

    aiortc's Opus encoder stamps packets by counting samples, not by pts, so this track never
    skips: a missing frame is sent as silence to keep the sample count on the wall clock.
    """

    kind = "audio"

    def __init__(self, clock: SessionClock, outlet: FrameOutlet[np.ndarray]) -> None:
        super().__init__()
        self._clock = clock
        self._outlet = outlet
        self._half = 0
        self._current = np.zeros(2 * PACKET_SAMPLES, np.int16)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._clock.started()
        index, part = divmod(self._half, 2)
        due = self._clock.release_time(index)
        if part == 0:
            samples, _ = await self._outlet.take(index, due, self._clock.period / 2)
            self._current = samples if samples is not None else np.zeros(2 * PACKET_SAMPLES, np.int16)
        else:
            await _sleep_until(due + self._clock.period / 2)
        chunk = self._current[part * PACKET_SAMPLES : (part + 1) * PACKET_SAMPLES]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = OUTPUT_RATE
        frame.pts = self._half * PACKET_SAMPLES
        frame.time_base = AUDIO_TIME_BASE
        self._half += 1
        return frame


def video_frame(image: np.ndarray) -> av.VideoFrame:
    """RGB image to the encoder's own pixel format (BT.601, limited range, as swscale makes it), done on the render
    thread to spare the event loop. OpenCV's converter takes 0.04 ms at 512x512 where swscale's took 0.75."""
    return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")


class Upsampler:
    """16 kHz float → 48 kHz s16, exactly 3x the samples per call (the resampler's 1 ms delay is pre-padded)."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=OUTPUT_RATE)
        self._backlog = np.zeros(0, np.int16)
        self._pts = 0

    def __call__(self, pcm16k: np.ndarray) -> np.ndarray:
        pcm = (np.clip(pcm16k, -1.0, 1.0) * 32767.0).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 16000
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, 16000)
        self._pts += len(pcm)
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        self._backlog = np.concatenate([self._backlog, *out])
        want = 3 * len(pcm)
        if len(self._backlog) < want:
            self._backlog = np.concatenate([np.zeros(want - len(self._backlog), np.int16), self._backlog])
        chunk, self._backlog = self._backlog[:want], self._backlog[want:]
        return chunk

