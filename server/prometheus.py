"""Prometheus metrics of the whole server, for `GET /metrics`: sessions, refusals, frames, render time, CPU.

Per-session numbers live in s2v.server.metrics and are summed here when Prometheus scrapes, so the render
threads pay nothing for it. Counters of frames add the sessions that have ended to the live ones, so they only
ever grow, as Prometheus expects of a counter.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from s2v.server.thread_cpu import ThreadCpu

if TYPE_CHECKING:
    from s2v.server.session import Session, SessionRegistry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ONSET_BUCKETS_S = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)
_RENDER_PARTS = {"graph": "graph_cpu_s", "convert": "frame_cpu_s"}  # the rest of render_cpu_s: paste and upkeep
_FRAME_COUNTS = {"frames": "video frames sent", "late": "render ticks that started late",
                 "filled": "releases with no fresh frame (picture repeated)", "dropped": "rendered frames discarded"}


def _onset_counts(latencies: list[float]) -> np.ndarray:
    """How many of `latencies` (s) fall in each bucket of ONSET_BUCKETS_S (the last one open), then their sum."""
    values = np.asarray(latencies, np.float64)
    counts = np.bincount(np.searchsorted(ONSET_BUCKETS_S, values), minlength=len(ONSET_BUCKETS_S) + 1)
    return np.append(counts, values.sum())


class ServerMetrics:
    """What /metrics reports; `refused` and `ended` are called by the routes and the sessions."""

    def __init__(self, sessions: SessionRegistry) -> None:
        self.sessions = sessions
        self.refusals: Counter[tuple[str, int]] = Counter()  # (route, HTTP status)
        self.admitted = 0
        self.ended_counts: Counter[str] = Counter()
        self.ended_onsets = np.zeros(len(ONSET_BUCKETS_S) + 2)  # ended sessions' onsets: per bucket, then the sum
        self.ended_cpu: Counter[str] = Counter()  # render CPU seconds of the sessions that ended, by part
        self.threads = ThreadCpu()
        self.registry = CollectorRegistry()
        self.registry.register(ProcessCollector(registry=None))  # CPU seconds, resident memory, open files
        self.registry.register(self)

    def refused(self, route: str, status: int) -> None:
        self.refusals[(route, status)] += 1

    def ended(self, session: Session) -> None:
        for key, count in session.metrics.snapshot().items():
            if key in _FRAME_COUNTS:
                self.ended_counts[key] += int(count or 0)
        self.ended_onsets += _onset_counts(session.metrics.onset_s)
        for field in ("render_cpu_s", *_RENDER_PARTS.values()):
            self.ended_cpu[field] += getattr(session.metrics, field)

    def collect(self) -> Iterator[Metric]:
        live = list(self.sessions)
        states = Counter("connecting" if s.state == "connecting" else "live" for s in live)
        sessions = GaugeMetricFamily("s2v_sessions", "sessions by state", labels=["state"])
        for state in ("connecting", "live"):
            sessions.add_metric([state], states[state])
        yield sessions
        yield GaugeMetricFamily("s2v_max_sessions", "live sessions this server admits", value=self.sessions.max_sessions)
        yield CounterMetricFamily("s2v_sessions_admitted", "offers answered", value=self.admitted)
        refusals = CounterMetricFamily("s2v_refusals", "requests refused, by route and HTTP status",
                                       labels=["route", "status"])
        for (route, status), count in sorted(self.refusals.items()):
            refusals.add_metric([route, str(status)], count)
        yield refusals
        snapshots = [s.metrics.snapshot() for s in live]
        for key, text in _FRAME_COUNTS.items():
            total = self.ended_counts[key] + sum(int(snap[key] or 0) for snap in snapshots)
            yield CounterMetricFamily(f"s2v_{key}", text, value=total)
        fps = [snap["fps"] for snap in snapshots]
        yield GaugeMetricFamily("s2v_fps_min", "lowest frame rate of the live sessions over the last second",
                                value=min(fps) if fps else 0.0)
        yield from self._cpu(live)
        onsets = self.ended_onsets + _onset_counts([t for session in live for t in session.metrics.onset_s])
        edges = [*map(str, ONSET_BUCKETS_S), "+Inf"]
        yield HistogramMetricFamily("s2v_onset_latency_seconds", "first frame drawn speaking after silence: from "
                                    "its audio reaching the session (decoded) to its release",
                                    buckets=list(zip(edges, np.cumsum(onsets[:-1]).astype(int).tolist())),
                                    sum_value=float(onsets[-1]))
        render = [snap["render_ms_p95"] for snap in snapshots if snap["render_ms_p95"] is not None]
        yield GaugeMetricFamily("s2v_render_ms_p95_max", "worst 95th-percentile render time of the live sessions",
                                value=max(render) if render else 0.0)

    def _cpu(self, live: list[Session]) -> Iterator[Metric]:
        if self.threads.available:
            self.threads.sample()
            stages = CounterMetricFamily("s2v_cpu_seconds", "CPU seconds by the kind of thread that spent them: "
                                         "event loop (signalling, ICE, DTLS, SRTP, RTP), render threads, aiortc's "
                                         "decoders, the executor (encoders)", labels=["stage"])
            for stage, seconds in self.threads.totals().items():
                stages.add_metric([stage], seconds)
            yield stages
        spent = {f: self.ended_cpu[f] + sum(getattr(s.metrics, f) for s in live)
                 for f in ("render_cpu_s", *_RENDER_PARTS.values())}
        parts = CounterMetricFamily("s2v_render_cpu_seconds", "render threads' CPU seconds by part: the graph, "
                                    "frame conversion for the tracks (colour, resampling), the rest (paste, "
                                    "audio in, motion control)", labels=["part"])
        for part, f in _RENDER_PARTS.items():
            parts.add_metric([part], spent[f])
        parts.add_metric(["rest"], max(spent["render_cpu_s"] - sum(spent[f] for f in _RENDER_PARTS.values()), 0.0))
        yield parts

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
