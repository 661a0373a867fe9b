"""A voice agent's speech, played out in real time: segments pushed ahead, read back one frame a tick.

A voice agent sends its TTS audio faster than real time, one segment per response, and cancels it when
the user interrupts. This queue holds that audio at the model's rate, hands the render loop one frame
of it per tick (silence between segments, so the avatar idles), and says for each frame which segments
start or finish in it, so that playback events go out when the viewer sees that frame rather than when
the audio arrived. It knows nothing of transports: the server's `/agent` socket and the pipecat
service both drive it.
"""

from __future__ import annotations

import fractions
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import av
import numpy as np

SAMPLE_FORMATS = {"s16": ("s16", np.dtype("<i2")), "f32": ("flt", np.dtype("<f4"))}
MAX_SEGMENTS = 256  # queued at once: each holds a resampler, and empty ones cost no buffer time


class PlayoutError(ValueError):
    """A segment or chunk the agent sent that cannot be played; the message says what to send instead."""


@dataclass(frozen=True)
class PcmFormat:
    """How one segment's binary chunks are laid out: little-endian, channels interleaved."""

    sample_rate: int
    channels: int = 1
    sample_format: str = "s16"  # "s16" (int16) or "f32" (float32 in [-1, 1])

    def __post_init__(self) -> None:
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, int) \
                or not 8000 <= self.sample_rate <= 192000:
            raise PlayoutError(f"sample_rate must be an integer from 8000 to 192000 Hz, not {self.sample_rate!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) \
                or self.channels not in (1, 2):
            raise PlayoutError(f"channels must be 1 (mono) or 2 (stereo, interleaved), not {self.channels!r}")
        if self.sample_format not in SAMPLE_FORMATS:
            raise PlayoutError(f"format must be one of {sorted(SAMPLE_FORMATS)}, not {self.sample_format!r}")

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> PcmFormat:
        if "sample_rate" not in body:
            raise PlayoutError('a segment must declare its "sample_rate" (and "channels", "format" unless 1 and s16)')
        return cls(body["sample_rate"], body.get("channels", 1), body.get("format", "s16"))

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample on every channel: every chunk must hold a whole number of these."""
        return self.channels * SAMPLE_FORMATS[self.sample_format][1].itemsize


@dataclass(frozen=True)
class PlaybackEvent:
    kind: str  # "playback_started" or "playback_finished"
    segment: int
    position_s: float = 0.0  # finished: how much of the segment was shown
    interrupted: bool = False  # finished: cut short by clear()

    def as_json(self) -> dict[str, Any]:
        if self.kind == "playback_started":
            return {"type": self.kind, "segment": self.segment}
        return {"type": self.kind, "segment": self.segment, "position_s": round(self.position_s, 3),
                "interrupted": self.interrupted}


class Shown(NamedTuple):
    """What one drawn frame held of the agent's speech."""

    events: list[PlaybackEvent]  # segments that started or finished in it
    speech_samples: int  # samples of segment audio in it (0: an idle frame, or one cut by a clear)


@dataclass(eq=False)  # compared by identity: two segments are never the same
class _Segment:
    id: int
    format: PcmFormat
    resampler: av.AudioResampler
    audio: deque[np.ndarray] = field(default_factory=deque)  # at the output rate, not yet read
    received: int = 0  # input frames pushed, for the resampler's timestamps
    read: int = 0  # output samples handed to the render loop
    shown: int = 0  # output samples in frames already shown
    ended: bool = False  # the agent said end_segment: no more audio comes
    started: bool = False  # playback_started was reported
    finished: bool = False  # playback_finished was reported


class SegmentPlayout:
    """Queued agent segments at `rate`; `read()` once per frame tick, `shown()` once per frame drawn.

    Every segment gets exactly one `playback_finished`; `playback_started` comes only if some of it was
    shown. Thread-safe: the socket pushes on the event loop while the render thread reads.
    """

    def __init__(self, rate: int, step: int, max_buffered_s: float) -> None:
        self.rate = rate
        self.step = step
        self.max_buffered = round(max_buffered_s * rate)
        self._lock = threading.Lock()
        self._segments: deque[_Segment] = deque()  # oldest (playing) first
        self._open: _Segment | None = None
        self._next_id = 1
        self._buffered = 0  # samples queued and not yet read, all segments together
        # Per frame read and not yet shown: [(segment, samples of it)], in order; frames leave the generator in order.
        self._in_flight: deque[list[tuple[_Segment, int]]] = deque()

    @property
    def buffered_s(self) -> float:
        with self._lock:
            return self._buffered / self.rate

    def begin(self, fmt: PcmFormat) -> int:
        """Open a new segment in `fmt`; returns its id."""
        with self._lock:
            if self._open is not None:
                raise PlayoutError(f"segment {self._open.id} is still open: send end_segment before a new segment")
            if len(self._segments) >= MAX_SEGMENTS:
                raise PlayoutError(f"{len(self._segments)} segments are already queued, the most this server keeps: "
                                   "wait for playback_finished events before opening more")
            seg = _Segment(self._next_id, fmt, av.AudioResampler(format="flt", layout="mono", rate=self.rate))
            self._next_id += 1
            self._open = seg
            self._segments.append(seg)
            return seg.id

    def push(self, data: bytes) -> None:
        """Raw PCM in the open segment's format."""
        with self._lock:
            seg = self._open
        if seg is None:
            raise PlayoutError("audio outside a segment: send {\"type\": \"segment\", \"sample_rate\": ...} first")
        fmt = seg.format
        if len(data) % fmt.frame_bytes:
            raise PlayoutError(f"a chunk of {len(data)} bytes is not a whole number of {fmt.frame_bytes}-byte "
                               f"sample frames ({fmt.channels} channel(s) of {fmt.sample_format}); chunk dropped")
        if not data:
            return
        coming = len(data) // fmt.frame_bytes * self.rate // fmt.sample_rate
        with self._lock:
            if self._buffered + coming > self.max_buffered:  # checked before any work is spent on the chunk
                raise PlayoutError(f"the agent is {self._buffered / self.rate:.0f} s ahead of playback, the most "
                                   f"this server buffers; chunk dropped: send at most real time from here on")
        samples = np.frombuffer(data, SAMPLE_FORMATS[fmt.sample_format][1])
        if fmt.sample_format == "f32":
            samples = np.clip(np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
        pcm = self._resample(seg, samples)
        with self._lock:
            if seg is self._open:  # a clear() in between dropped the segment
                self._append(seg, pcm)

    def end(self) -> int:
        """The open segment is complete; returns its id."""
        with self._lock:
            seg = self._open
            if seg is None:
                raise PlayoutError("end_segment without an open segment")
            self._open = None
        tail = [f.to_ndarray().reshape(-1) for f in seg.resampler.resample(None)]
        with self._lock:
            if tail and seg in self._segments:
                self._append(seg, np.concatenate(tail))
            seg.ended = True
            return seg.id

    def clear(self) -> list[PlaybackEvent]:
        """Drop all queued speech now; a `playback_finished(interrupted)` for every segment not yet finished."""
        with self._lock:
            # Segments read to their end but not yet shown are still finishing: cut them short too.
            cut = {id(s): s for s in self._segments}
            cut.update({id(s): s for parts in self._in_flight for s, _ in parts if not s.finished})
            events = []
            for s in sorted(cut.values(), key=lambda s: s.id):
                s.finished = True
                events.append(PlaybackEvent("playback_finished", s.id, s.shown / self.rate, interrupted=True))
            self._segments.clear()
            self._open = None
            self._buffered = 0
            for i in range(len(self._in_flight)):  # frames read but not shown now carry nothing of theirs
                self._in_flight[i] = []
            return events

    def read(self) -> np.ndarray:
        """The next frame's audio: queued speech, or silence where there is none yet."""
        out = np.zeros(self.step, np.float32)
        parts: list[tuple[_Segment, int]] = []
        with self._lock:
            filled = 0
            while filled < self.step and self._segments:
                seg = self._segments[0]
                if not seg.audio:
                    if seg.ended:  # all of it read: the next segment may start in this frame
                        self._segments.popleft()
                        parts.append((seg, 0))
                        continue
                    break  # the agent is slower than real time: silence until more comes
                chunk = seg.audio[0]
                n = min(len(chunk), self.step - filled)
                out[filled : filled + n] = chunk[:n]
                if n == len(chunk):
                    seg.audio.popleft()
                else:
                    seg.audio[0] = chunk[n:]
                seg.read += n
                self._buffered -= n
                filled += n
                parts.append((seg, n))
            if self._segments and not self._segments[0].audio and self._segments[0].ended:
                parts.append((self._segments.popleft(), 0))
            self._in_flight.append(parts)
        return out

    def shown(self) -> Shown:
        """Call once per frame the generator yields, in order: the events of that frame and how much speech it has."""
        events: list[PlaybackEvent] = []
        speech = 0
        with self._lock:
            if not self._in_flight:
                return Shown(events, speech)
            for seg, n in self._in_flight.popleft():
                speech += n
                if n and not seg.started:
                    seg.started = True
                    events.append(PlaybackEvent("playback_started", seg.id))
                seg.shown += n
                if seg.ended and not seg.finished and seg.shown == seg.read and seg not in self._segments:
                    seg.finished = True
                    if not seg.started:  # an empty segment still starts and finishes
                        events.append(PlaybackEvent("playback_started", seg.id))
                        seg.started = True
                    events.append(PlaybackEvent("playback_finished", seg.id, seg.shown / self.rate))
        return Shown(events, speech)

    def _resample(self, seg: _Segment, samples: np.ndarray) -> np.ndarray:
        fmt = seg.format
        name = SAMPLE_FORMATS[fmt.sample_format][0]
        layout = "mono" if fmt.channels == 1 else "stereo"
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format=name, layout=layout)
        frame.sample_rate = fmt.sample_rate
        frame.pts = seg.received
        frame.time_base = fractions.Fraction(1, fmt.sample_rate)
        seg.received += len(samples) // fmt.channels
        out = [f.to_ndarray().reshape(-1) for f in seg.resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _append(self, seg: _Segment, pcm: np.ndarray) -> None:
        if len(pcm):
            seg.audio.append(pcm.astype(np.float32, copy=False))
            self._buffered += len(pcm)

