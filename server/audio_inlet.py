"""The jitter buffer between the network and the render clock.

Audio arrives in 20 ms packets whenever the network (and the event loop) delivers them; the
render thread takes 40 ms on every tick of its own clock. Each sample is filed under its position
on the sender's timeline (from the RTP timestamps), and the renderer reads a fixed `delay` behind
the newest sample seen when it started. So the delay between speaker and avatar is set once and
stays: a late packet fills its slot if its time has not come, or is dropped if it has; a gap
reads as silence; a burst beyond the buffer's room drops the oldest audio instead of piling up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class InletCounters:
    underruns: int = 0  # reads that found only part of their audio (the rest played as silence)
    late_samples: int = 0  # samples that arrived after their time was read
    dropped_samples: int = 0  # oldest audio discarded to keep the delay from growing


class AudioInlet:
    """Thread-safe playout buffer of 16 kHz mono float PCM, addressed by sample position.

    `push` is called from the event loop as packets are decoded; `read` from the render thread. The samples
    live in one ring allocated up front, `limit` plus one read long: whatever a peer sends, the inlet never
    allocates more (a timeline that jumps either way is resynchronised, and the oldest audio goes first).
    Ring slots outside the held window [base, end) are kept at zero, so a gap reads as silence.
    """

    def __init__(self, delay_samples: int, read_samples: int, max_extra_samples: int | None = None,
                 log: logging.Logger | logging.LoggerAdapter = logging.getLogger(__name__)) -> None:
        if delay_samples < read_samples:
            raise ValueError("the playout delay must hold at least one read")
        self.delay = delay_samples
        self.read_samples = read_samples
        # Room ahead of the reader before the oldest audio is dropped: one read of slack absorbs bursts.
        self.limit = delay_samples + (read_samples if max_extra_samples is None else max_extra_samples)
        # A packet this far behind the reader is not late but from a restarted timeline (about 1 s at 40 ms reads).
        self.rewind = 25 * read_samples
        self.counters = InletCounters()
        self._log = log
        self._lock = threading.Lock()
        self._ring = np.zeros(self.limit + read_samples, np.float32)
        self._base = 0  # oldest position still held
        self._end: int | None = None  # one past the newest sample received; None before any audio
        self._cursor: int | None = None  # position of the next read; None until the first read after audio
        self._pushes: deque[tuple[int, float]] = deque(maxlen=64)  # (end position, arrival time) of recent pushes
        self._arrivals: deque[float | None] = deque(maxlen=64)  # when each recent read's audio was all in
        self._reads = 0

    def push(self, pcm: np.ndarray, position: int) -> None:
        """File `pcm` under its position on the sender's timeline (samples since the stream began)."""
        end = position + len(pcm)
        with self._lock:
            if self._end is None:
                self._resynchronise(position)
            elif position - self._end > self.limit:
                # The sender's timeline jumped ahead (a new RTP timestamp base, a hostile peer): start over on it
                # rather than wait through the distance.
                self._log.info("audio inlet: sender timeline jumped ahead %d samples; resynchronising",
                               position - self._end)
                self._resynchronise(position)
            elif self._cursor is not None and end <= self._cursor:
                self.counters.late_samples += len(pcm)
                if self._cursor - end > self.rewind:  # the sender's timeline jumped back: start over on it
                    self._log.info("audio inlet: sender timeline jumped back %d samples; resynchronising",
                                   self._cursor - end)
                    self._resynchronise(position)
                else:
                    return
            if self._cursor is not None:
                self.counters.late_samples += max(0, min(end, self._cursor) - position)
            self._pushes.append((end, time.monotonic()))
            newest = end if self._end is None else max(self._end, end)
            if self._cursor is not None and newest - self._cursor > self.limit:
                cut = newest - self.delay - self._cursor
                self.counters.dropped_samples += cut
                self._cursor += cut
                self._log.info("audio inlet overrun: dropped the oldest %d samples to hold the playout delay", cut)
            self._forget_before(self._cursor if self._cursor is not None else newest - self.limit)
            start = max(position, self._base)
            if start < end:
                self._write(start, pcm[start - position :])
            self._end = newest

    def read(self) -> np.ndarray:
        """The next `read_samples` samples of the timeline (silence where audio is missing or none came yet)."""
        n = self.read_samples
        with self._lock:
            self._reads += 1
            if self._end is None:
                self._arrivals.append(None)
                return np.zeros(n, np.float32)
            if self._cursor is None:
                # The newest sample seen now is played `delay` from now, and so is every later one.
                self._cursor = self._end - self.delay
                self._forget_before(self._cursor)
            out = np.zeros(n, np.float32)
            lo, hi = max(self._cursor, self._base), min(self._cursor + n, self._end)
            if hi > lo:
                out[lo - self._cursor : hi - self._cursor] = self._slots(lo, hi)
                if self._end < self._cursor + n:  # audio was flowing but not all of this read's had come
                    self.counters.underruns += 1
                    self._log.debug("audio inlet underrun: %d samples missing", self._cursor + n - self._end)
            self._arrivals.append(next((t for e, t in self._pushes if e >= self._cursor + n), None))
            self._cursor += n
            self._forget_before(self._cursor)
            return out

    def arrival(self, read: int) -> float | None:
        """Monotonic time at which the audio of read number `read` (0 = the first) had all arrived; None if it
        never did, or the read is too old to remember."""
        with self._lock:
            back = self._reads - 1 - read
            return self._arrivals[-1 - back] if 0 <= back < len(self._arrivals) else None

    def clear(self) -> None:
        """Forget buffered speech (interrupt); the next audio sets the delay afresh."""
        with self._lock:
            self._ring[:] = 0.0
            self._end = self._cursor = None
            self._pushes.clear()

    @property
    def depth_samples(self) -> int:
        """Audio received ahead of the reader."""
        with self._lock:
            if self._end is None:
                return 0
            return max(0, self._end - (self._cursor if self._cursor is not None else self._base))

    def _resynchronise(self, position: int) -> None:
        """Forget the old timeline; the next read sets the delay afresh on the new one."""
        self._ring[:] = 0.0
        self._base, self._cursor, self._end = position, None, None
        self._pushes.clear()

    def _spans(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """(ring start, ring stop, offset into the span) pieces of positions [lo, hi), at most one ring long."""
        size = len(self._ring)
        first, length = lo % size, hi - lo
        if first + length <= size:
            return [(first, first + length, 0)]
        return [(first, size, 0), (0, first + length - size, size - first)]

    def _slots(self, lo: int, hi: int) -> np.ndarray:
        return np.concatenate([self._ring[a:b] for a, b, _ in self._spans(lo, hi)])

    def _write(self, position: int, pcm: np.ndarray) -> None:
        for a, b, offset in self._spans(position, position + len(pcm)):
            self._ring[a:b] = pcm[offset : offset + b - a]

    def _forget_before(self, position: int) -> None:
        """Drop (and zero) everything before `position`."""
        if position <= self._base:
            return
        if position - self._base >= len(self._ring):
            self._ring[:] = 0.0
        else:
            for a, b, _ in self._spans(self._base, position):
                self._ring[a:b] = 0.0
        self._base = position
