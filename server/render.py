"""The render thread: one tick per frame period, inference off the event loop.

Each tick takes 40 ms of audio from its source, the peer's inlet or an agent's playout (silence when
nobody speaks, so the avatar idles and the video never stalls), feeds the generator, and hands every
frame it yields, already converted for the encoders, to the output tracks. ONNX Runtime releases the
GIL while it runs, so the event loop keeps moving packets meanwhile.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from s2v.contract import MOTION_CHANNELS
from s2v.runtime.generator import StreamingGenerator
from s2v.server.clock import SessionClock
from s2v.server.metrics import SessionMetrics
from s2v.server.tracks import OUTPUT_RATE, FrameOutlet, Upsampler, video_frame

_SPEECH = MOTION_CHANNELS.index("speech")
MAX_BEHIND_TICKS = 3  # further behind than this, ticks are given up instead of rendered in a burst
REDRAW_LEAD_S = 0.01  # after an interrupt, a frame due sooner than this goes out as drawn: no time to redraw it


class AudioSource(Protocol):
    """Where each tick's audio comes from: the peer's microphone (AudioInlet) or an agent (SegmentPlayout)."""

    def read(self) -> np.ndarray: ...


class RenderLoop:
    def __init__(
        self,
        log: logging.LoggerAdapter,
        generator: StreamingGenerator,
        source: AudioSource,
        clock: SessionClock,
        video_out: FrameOutlet,
        audio_out: FrameOutlet,
        metrics: SessionMetrics,
        on_failure: Callable[[BaseException], None],
        shown: Callable[[int], None] | None = None,
        speech_started: Callable[[int, int], None] | None = None,
    ) -> None:
        self._log = log
        self._generator = generator
        self._source = source
        self._shown = shown  # told the timeline index of every frame drawn, in order
        # told the first frame drawn speaking after silence: its timeline index and which tick's audio it shows
        self._speech_started = speech_started
        self._clock = clock
        self._video_out = video_out
        self._audio_out = audio_out
        self._metrics = metrics
        self._on_failure = on_failure
        self._upsample = Upsampler()
        self._stop = threading.Event()
        self._wake = threading.Event()  # set with _stop, or when frames are to be redrawn at rest
        self._redraw: tuple[int, int] | None = None  # [first, end) frames to redraw at rest
        self._thread = threading.Thread(target=self._run, name=f"render-{log.extra['session']}", daemon=True)
        self.speaking = False  # the latest frame's voice activity, for the session state
        self.skipped = 0  # ticks given up so far: timeline index = generator index + skipped

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def redraw_at_rest(self, first_at_rest: int) -> int:
        """After the generator's interrupt: frames drawn before it but not yet due are redrawn with the mouth at
        rest and silence, so the next frame that leaves is at rest. Returns the first frame that will be."""
        clock = self._clock
        if clock.start is None:
            return first_at_rest
        first = max(0, math.ceil((clock.now() + REDRAW_LEAD_S - clock.release_time(0)) / clock.period))
        if first >= first_at_rest:
            return first_at_rest
        self._redraw = (first, first_at_rest)
        self._wake.set()
        return first

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._log.warning("render thread did not stop within %.1f s", timeout)

    def _run(self) -> None:
        self._log.debug("render thread started")
        try:
            self._ticks()
        except BaseException as exc:  # the session must hear of it, whatever it was
            if not self._stop.is_set():
                self._log.exception("render thread failed")
                self._on_failure(exc)
        self._log.debug("render thread stopped")

    def _ticks(self) -> None:
        clock, metrics = self._clock, self._metrics
        tick = 0
        while True:
            wait = clock.tick_time(tick) - clock.now()
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
                if self._stop.is_set():
                    return
                if (redraw := self._redraw) is not None:
                    self._redraw = None
                    self._draw_at_rest(*redraw)
                continue
            elif self._stop.is_set():
                return
            elif -wait > clock.period:
                metrics.late_ticks += 1
                behind = int(-wait / clock.period)
                if behind > MAX_BEHIND_TICKS:
                    # Catching up in a burst would only produce frames already past their release time.
                    tick += behind
                    self.skipped += behind
                    metrics.skipped_ticks += behind
                    self._log.warning("render is %d ticks behind the clock; skipping them", behind)
            started, cpu, graph = time.perf_counter(), time.thread_time(), self._generator.graph_cpu_s
            converting = 0.0
            self._generator.push_audio(self._source.read())
            for frame in self._generator.frames():
                index = frame.index + self.skipped
                before = time.thread_time()
                video, audio = video_frame(frame.image), self._upsample(frame.audio)
                converting += time.thread_time() - before
                self._video_out.put_threadsafe(index, video)
                self._audio_out.put_threadsafe(index, audio)
                speaking = bool(frame.motion[_SPEECH] > 0.5)
                if speaking and not self.speaking and self._speech_started is not None:
                    self._speech_started(index, frame.index)
                self.speaking = speaking
                if self._shown is not None:
                    self._shown(index)
            metrics.rendered((time.perf_counter() - started) * 1000.0, time.thread_time() - cpu,
                             self._generator.graph_cpu_s - graph, converting)
            tick += 1

    def _draw_at_rest(self, first: int, end: int) -> None:
        image = self._generator.rest_image()
        silence = np.zeros(OUTPUT_RATE // self._clock.fps, np.int16)
        for index in range(first, end):  # one VideoFrame each: the track stamps its own pts on it
            self._video_out.put_threadsafe(index, video_frame(image))
            self._audio_out.put_threadsafe(index, silence)
