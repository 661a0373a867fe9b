"""Measurements on what a client sent and received: speech onset, mouth motion, sync.

Pure numpy on arrays a client collected, so the tests and `s2v client` read the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

MOTION_QUANTILES = (0.2, 0.95)  # noise floor and typical peak of mouth motion


def envelope(pcm: np.ndarray, rate: int, window_s: float = 0.01) -> np.ndarray:
    """RMS per window of `window_s` seconds."""
    hop = max(1, int(rate * window_s))
    n = len(pcm) // hop
    return np.sqrt(np.mean(pcm[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))


def speech_onset(pcm: np.ndarray, rate: int, relative: float = 0.1) -> float | None:
    """Seconds into `pcm` where the loudness first passes `relative` of its peak (10 ms windows)."""
    env = envelope(pcm, rate)
    if not len(env) or env.max() <= 0:
        return None
    return float(np.flatnonzero(env > relative * env.max())[0] * 0.01)


def mouth_region(avatar: dict[str, Any]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the mouth in the video, from the avatar description the server answered with.

    The server's mouth box when it sent one, otherwise the lower middle of the face box.
    """
    mouth = avatar.get("mouth")
    if isinstance(mouth, Sequence) and len(mouth) == 4:
        return tuple(int(v) for v in mouth)  # type: ignore[return-value]
    x0, y0, x1, y1 = avatar["box"]
    w, h = x1 - x0, y1 - y0
    return x0 + int(0.3 * w), y0 + int(0.6 * h), x0 + int(0.7 * w), y0 + int(0.9 * h)


def frame_motion(crops: np.ndarray) -> np.ndarray:
    """Mean absolute change of each crop from the previous one (first entry 0), in grey levels."""
    grey = crops.astype(np.float32).mean(axis=-1)
    diffs = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))
    return np.concatenate([[0.0], diffs])


def openness(crops: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Mean absolute difference of each crop from the mouth at rest: grows as the mouth opens."""
    grey = crops.astype(np.float32).mean(axis=-1)
    return np.abs(grey - rest.astype(np.float32).mean(axis=-1)).mean(axis=(1, 2))


def motion_threshold(motion: np.ndarray) -> float:
    floor, peak = np.quantile(motion, MOTION_QUANTILES)
    return float(floor + 0.2 * (peak - floor))


def motion_onset(times: np.ndarray, motion: np.ndarray, after: float) -> float | None:
    """Time of the first frame at or after `after` whose mouth clearly moves."""
    moving = np.flatnonzero((times >= after) & (motion > motion_threshold(motion)))
    return float(times[moving[0]]) if len(moving) else None


def lag(reference_t: np.ndarray, reference: np.ndarray, signal_t: np.ndarray, signal: np.ndarray,
        max_lag_s: float = 0.5, step_s: float = 0.005) -> tuple[float, float]:
    """Delay of `signal` behind `reference` (seconds) by normalised cross-correlation; also the peak value."""
    start, end = max(reference_t[0], signal_t[0]), min(reference_t[-1], signal_t[-1])
    grid = np.arange(start, end, step_s)
    a = np.interp(grid, reference_t, reference)
    b = np.interp(grid, signal_t, signal)
    a = (a - a.mean()) / (a.std() + 1e-12)
    b = (b - b.mean()) / (b.std() + 1e-12)
    lags = np.arange(-int(max_lag_s / step_s), int(max_lag_s / step_s) + 1)
    scores = np.array([np.mean(a[max(0, -k) : len(a) - max(0, k)] * b[max(0, k) : len(b) - max(0, -k)]) for k in lags])
    best = int(np.argmax(scores))
    shift = float(lags[best])
    if 0 < best < len(scores) - 1:  # parabolic refinement between grid steps
        y0, y1, y2 = scores[best - 1 : best + 2]
        denom = y0 - 2 * y1 + y2
        if denom < 0:
            shift += 0.5 * (y0 - y2) / denom
    return shift * step_s, float(scores[best])


def audio_alignment(sent: np.ndarray, received: np.ndarray, rate: int, max_lag_s: float = 2.0) -> tuple[float, float]:
    """(delay in seconds, normalised correlation) of `received` against `sent`, via FFT cross-correlation."""
    n = len(sent) + len(received)
    size = 1 << (n - 1).bit_length()
    spectrum = np.fft.rfft(received, size) * np.conj(np.fft.rfft(sent, size))
    xcorr = np.fft.irfft(spectrum, size)
    max_lag = min(int(max_lag_s * rate), len(received) - 1)
    best = int(np.argmax(xcorr[: max_lag + 1]))
    overlap = received[best : best + len(sent)]
    ref = sent[: len(overlap)]
    score = float(np.dot(ref, overlap) / (np.linalg.norm(ref) * np.linalg.norm(overlap) + 1e-12))
    return best / rate, score


def cavity(crops: np.ndarray) -> np.ndarray:
    """Share of each mouth crop darker than 45 % of its median brightness: the open mouth's inside.

    Unlike a difference from a rest picture it ignores the head's small idle motion, so it tells a
    mouth at rest from an open one in frames where the head moves.
    """
    grey = crops.astype(np.float32).mean(axis=-1)
    median = np.median(grey.reshape(len(grey), -1), axis=1)
    return (grey < 0.45 * median[:, None, None]).mean(axis=(1, 2))


def settles(times: np.ndarray, level: np.ndarray, after: float, ceiling: float, hold: int = 5) -> float | None:
    """Time of the first frame at or after `after` from which `level` stays under `ceiling` for `hold` frames."""
    calm = level <= ceiling
    for i in np.flatnonzero(times >= after):
        if i + hold <= len(calm) and calm[i : i + hold].all():
            return float(times[i])
    return None
