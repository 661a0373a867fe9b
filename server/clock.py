"""The one clock of a session: render ticks and the release of every audio and video frame.

aiortc's RTCP sender reports tie each track's RTP timestamps to the wall time its packets leave.
If both tracks release frame i at the same wall time, derived from one start instant, a receiver
that lip-syncs on those reports plays each picture with the sound it was made from. Everything
here is `time.monotonic`, which is also what asyncio's loop clock reads.
"""

from __future__ import annotations

import asyncio
import time


class SessionClock:
    """Frame i of the output timeline is rendered at `tick_time(i + lookahead)` and released at `release_time(i)`.

    `latency_s` is the gap between reading a frame's audio from the inlet and releasing the frame:
    the generator's look-ahead plus the render margin.
    """

    def __init__(self, fps: int, lookahead_frames: int, render_margin_s: float) -> None:
        self.fps = fps
        self.period = 1.0 / fps
        self.latency_s = lookahead_frames * self.period + render_margin_s
        self.start: float | None = None
        self._started = asyncio.Event()

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def begin(self) -> None:
        """Start the timeline now (called on the event loop when the peer connects)."""
        if self.start is None:
            self.start = self.now()
            self._started.set()

    async def started(self) -> float:
        await self._started.wait()
        return self.tick_time(0)

    def tick_time(self, k: int) -> float:
        if self.start is None:
            raise RuntimeError("the session clock has not begun (the peer is not connected yet)")
        return self.start + k * self.period

    def release_time(self, index: int) -> float:
        """Wall time at which frame `index` (audio and picture alike) goes to the encoders."""
        return self.tick_time(index) + self.latency_s
