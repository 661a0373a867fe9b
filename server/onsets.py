"""Speech onset to lips, timed inside the server for every utterance of every session.

From the moment the decoded audio that starts an utterance reaches the session (after aiortc's jitter buffer)
to the release of the first frame the model draws as speaking: the playout delay, the graph's look-ahead, the
render and the release margin, as they really add up. A client measures more (the network both ways, its own
buffers and decoder); `s2v bench` prints that figure, /metrics this one.
"""

from __future__ import annotations

from collections import deque

import numpy as np

VOICE_RMS = 0.01  # about -40 dBFS: louder audio is taken for voice
QUIET_S = 0.3  # voice after this much quiet starts an utterance
STALE_S = 3.0  # an onset the model has not drawn as speech within this long was not speech


class OnsetTimer:
    """`heard` on the event loop as audio arrives; `drawn` on the render thread when speech first shows."""

    def __init__(self) -> None:
        self._pending: deque[float] = deque(maxlen=8)  # arrival times of utterance starts not yet drawn
        self._last_voice = float("-inf")

    def heard(self, pcm: np.ndarray, at: float) -> None:
        if pcm.size and float(np.sqrt(np.mean(np.square(pcm)))) >= VOICE_RMS:
            if at - self._last_voice > QUIET_S:
                self._pending.append(at)
            self._last_voice = at

    def drawn(self, released_at: float) -> float | None:
        """Seconds from the oldest utterance start still pending to `released_at`, the release time of the first
        frame drawn as speaking; None when no start is pending (the model saw speech the level did not)."""
        while self._pending and released_at - self._pending[0] > STALE_S:
            self._pending.popleft()
        if not self._pending:
            return None
        started = self._pending.popleft()
        while self._pending and self._pending[0] <= released_at:  # starts drawn by the same frame
            self._pending.popleft()
        return released_at - started
