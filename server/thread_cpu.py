"""CPU time by what the server's threads do, read from Linux's per-thread accounts (/proc/self/task).

Each stage of a session runs on threads of its own kind: the event loop (HTTP, ICE, DTLS, SRTP, RTP packets,
pacing), aiortc's decoder threads (incoming Opus, and any video a peer sends, decoded and dropped), the default
executor (aiortc's encoders, VP8 and Opus, and the occasional avatar read), and one render thread per session
(graph, paste, colour conversion). Sampling every thread's CPU once a second, and keeping the last reading of
threads that have ended, gives counters per stage that only grow; a thread's final second before it ends is the
only CPU lost.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

STAGES = ("event_loop", "render", "decode", "encode", "other")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def stage_of(thread_name: str) -> str:
    if thread_name == "MainThread":
        return "event_loop"
    if thread_name.startswith("render-"):
        return "render"
    if thread_name.endswith("-decoder"):  # aiortc's audio-decoder, and video-decoder for video a peer sends
        return "decode"
    if thread_name.startswith("asyncio_"):  # the loop's default executor
        return "encode"
    return "other"


def _cpu_seconds(native_id: int) -> float | None:
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:  # not Linux, or the thread just ended
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime and stime, fields 14 and 15 of stat


class ThreadCpu:
    """Counters of CPU seconds per stage, sampled by a daemon thread every `interval_s`."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval = interval_s
        self._lock = threading.Lock()
        self._ended: Counter[str] = Counter()
        self._last: dict[int, tuple[str, float]] = {}  # native id: (stage, CPU seconds at the last sample)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self.available = _cpu_seconds(threading.get_native_id()) is not None

    def start(self) -> None:
        if self.available:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def sample(self) -> None:
        seen: dict[int, tuple[str, float]] = {}
        for thread in threading.enumerate():
            if thread.native_id is not None and (cpu := _cpu_seconds(thread.native_id)) is not None:
                seen[thread.native_id] = (stage_of(thread.name), cpu)
        with self._lock:
            for native_id, (stage, cpu) in self._last.items():
                now = seen.get(native_id)
                if now is None or now[0] != stage or now[1] < cpu:  # ended (its id maybe taken by a new thread)
                    self._ended[stage] += cpu
            self._last = seen

    def totals(self) -> dict[str, float]:
        """CPU seconds per stage since the server started (threads that ended included)."""
        with self._lock:
            totals = Counter(self._ended)
            for stage, cpu in self._last.values():
                totals[stage] += cpu
        return {stage: totals[stage] for stage in STAGES}

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()
