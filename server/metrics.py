"""Per-session counters, reported in /ws stats events and /healthz.

The render thread and the output tracks write here from different threads; every field is a
plain int/float updated under the GIL, and the snapshot tolerates reading mid-update.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SessionMetrics:
    frames: int = 0  # video frames released to the encoder
    late_ticks: int = 0  # render ticks that started more than one period behind the clock
    skipped_ticks: int = 0  # ticks given up to catch up with the clock
    dropped: int = 0  # rendered frames that missed their release time and were discarded
    filled: int = 0  # releases with no fresh frame (previous picture repeated, silence sent)
    render_cpu_s: float = 0.0  # CPU time of the render thread (inference, paste, frame conversion)
    graph_cpu_s: float = 0.0  # ...of it, inside the graph (motion network and renderer)
    frame_cpu_s: float = 0.0  # ...of it, turning frames into what the tracks send (colour conversion, resampling)
    render_started: float | None = None  # monotonic time the render thread started
    onset_s: list[float] = field(default_factory=list)  # speech onsets: their audio's arrival -> release, s
    _render_ms: deque[float] = field(default_factory=lambda: deque(maxlen=250))
    _sent_at: deque[float] = field(default_factory=lambda: deque(maxlen=64))

    def rendered(self, wall_ms: float, cpu_s: float, graph_cpu_s: float, frame_cpu_s: float) -> None:
        self._render_ms.append(wall_ms)
        self.render_cpu_s += cpu_s
        self.graph_cpu_s += graph_cpu_s
        self.frame_cpu_s += frame_cpu_s

    def sent_video(self) -> None:
        self.frames += 1
        self._sent_at.append(time.monotonic())

    def fps(self) -> float:
        """Video frames released during the last second."""
        now = time.monotonic()
        return float(sum(1 for t in self._sent_at if now - t <= 1.0))

    def snapshot(self) -> dict[str, float | int | None]:
        render = np.array(self._render_ms) if self._render_ms else None
        wall = time.monotonic() - self.render_started if self.render_started else 0.0
        return {
            "fps": self.fps(),
            "frames": self.frames,
            "late": self.late_ticks,
            "skipped": self.skipped_ticks,
            "dropped": self.dropped,
            "filled": self.filled,
            "render_ms_p50": round(float(np.percentile(render, 50)), 2) if render is not None else None,
            "render_ms_p95": round(float(np.percentile(render, 95)), 2) if render is not None else None,
            "render_cpu": round(self.render_cpu_s / wall, 3) if wall > 0 else None,
        }
