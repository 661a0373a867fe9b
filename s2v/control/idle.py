"""Idle life and prompt steering for head pose and blinks.

The audio drives the mouth; this controller drives what a listener expects of a living face around
it: slow head sway that grows while the person speaks, and blinks at human intervals. A free-text
prompt steers it. Output rows follow CONTROL_CHANNELS and feed the graph's `controls` input.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from s2v.contract import CONTROL_CHANNELS


@dataclass(frozen=True)
class MotionStyle:
    """What a prompt can set. Amplitudes are radians at full speech activity."""

    sway: float = 1.0  # multiplies every head amplitude
    yaw_bias: float = 0.0  # radians, + looks towards image right
    pitch_bias: float = 0.0  # radians, + looks down
    nod: float = 1.0  # extra multiplier on pitch motion
    blink_rate: float = 1.0  # blinks per (typical 4 s)
    brow: float = 1.0  # multiplies how high the brows rise on emphasis
    knit: float = 0.0  # inner brows drawn together, all the time


# Phrases a prompt may contain, each one adjusting the style. Matching is by whole word, so
# "calmly" does not match "calm" by accident; several phrases combine.
_PHRASES: tuple[tuple[str, dict[str, float]], ...] = (
    (r"\b(calm|still|serious|relaxed|steady|quiet)\b", {"sway": 0.5}),
    (r"\b(lively|energetic|animated|excited|expressive|enthusiastic)\b", {"sway": 1.8}),
    (r"\b(nod|nods|nodding|agree|agreeing)\b", {"nod": 2.5}),
    (r"\b(sleepy|tired|drowsy)\b", {"blink_rate": 2.0, "pitch_bias": 0.04}),
    (r"\b(focused|staring|intense)\b", {"blink_rate": 0.5, "sway": 0.7}),
    (r"\b(surprised|curious|amazed|astonished|excited)\b", {"brow": 1.8}),
    (r"\b(serious|concerned|worried|angry|stern|frowning)\b", {"knit": 0.5, "brow": 0.5}),
    (r"\blook(s|ing)? left\b", {"yaw_bias": -0.12}),
    (r"\blook(s|ing)? right\b", {"yaw_bias": 0.12}),
    (r"\blook(s|ing)? up\b", {"pitch_bias": -0.08}),
    (r"\blook(s|ing)? down\b", {"pitch_bias": 0.08}),
)


def style_from_prompt(prompt: str) -> MotionStyle:
    """Read a free-text prompt into a style; unknown words leave the default."""
    style = MotionStyle()
    text = prompt.lower()
    for pattern, change in _PHRASES:
        if re.search(pattern, text):
            for key, value in change.items():
                old = getattr(style, key)
                new = old + value if key.endswith("_bias") or key == "knit" else old * value
                style = replace(style, **{key: new})
    return style


@dataclass
class IdleConfig:
    seed: int = 0
    fps: int = 25
    yaw: float = 0.035  # radians of sway at rest; doubles while speaking
    pitch: float = 0.025
    roll: float = 0.015
    blink_interval_s: tuple[float, float] = (2.0, 6.0)
    blink_close_s: float = 0.08
    blink_open_s: float = 0.16
    follow_s: float = 0.6  # time constant with which a new prompt takes over
    gaze_interval_s: tuple[float, float] = (1.0, 3.5)  # between glances
    gaze_x: float = 0.5  # fraction of the irises' travel a glance may take, half of it while speaking
    gaze_y: float = 0.3
    brow_surge: float = 0.35  # rise in voice level over its recent mean that lifts the brows
    brow_lift: float = 0.4


class MotionController:
    """Produces `controls` rows frame by frame; deterministic for a seed."""

    def __init__(self, config: IdleConfig | None = None) -> None:
        self.config = config or IdleConfig()
        self._rng = np.random.default_rng(self.config.seed)
        # Three incommensurate slow sines per head axis read as natural sway, not as a loop.
        self._freqs = self._rng.uniform(0.07, 0.45, size=(3, 3))
        self._phases = self._rng.uniform(0, 2 * math.pi, size=(3, 3))
        self._frame = 0
        self._target = MotionStyle()
        self._style = np.array(self._as_vector(self._target))
        self._activity = 0.0
        self._next_blink = self._draw_blink_gap()
        self._blink_start = -(10**9)
        self._gaze_rng = np.random.default_rng(self.config.seed + 1)  # its own draws: blinks stay as they were
        self._gaze = np.zeros(2)
        self._gaze_target = np.zeros(2)
        self._next_glance = 0
        self._raised_at = -(10**9)

    @staticmethod
    def _as_vector(style: MotionStyle) -> list[float]:
        return [style.sway, style.yaw_bias, style.pitch_bias, style.nod, style.blink_rate, style.brow, style.knit]

    def set_prompt(self, prompt: str) -> MotionStyle:
        self._target = style_from_prompt(prompt)
        return self._target

    def _draw_blink_gap(self) -> int:
        low, high = self.config.blink_interval_s
        rate = max(float(self._style[4]), 0.1)
        return int(self._rng.uniform(low, high) / rate * self.config.fps)

    def _blink(self, frame: int) -> float:
        cfg = self.config
        t = (frame - self._blink_start) / cfg.fps
        if t < 0:
            return 0.0
        if t < cfg.blink_close_s:
            return t / cfg.blink_close_s
        if t < cfg.blink_close_s + cfg.blink_open_s:
            return 1.0 - (t - cfg.blink_close_s) / cfg.blink_open_s
        return 0.0

    def next(self, levels: np.ndarray) -> np.ndarray:
        """Controls for the next len(levels) frames; `levels` is each frame's voice level in [0, 1]."""
        cfg = self.config
        n = len(levels)
        out = np.zeros((n, len(CONTROL_CHANNELS)), np.float32)
        follow = 1.0 - math.exp(-1.0 / (cfg.follow_s * cfg.fps))
        target = np.array(self._as_vector(self._target))
        for row in range(n):
            frame = self._frame
            self._style += follow * (target - self._style)
            surge = float(levels[row]) - self._activity  # the voice rising above its recent level: emphasis
            self._activity += 0.08 * (float(levels[row]) - self._activity)
            sway, yaw_bias, pitch_bias, nod, _, brow, knit = self._style
            t = frame / cfg.fps
            wave = np.sin(2 * math.pi * self._freqs * t + self._phases).sum(axis=1) / 3.0
            gain = sway * (1.0 + self._activity)
            out[row, 0] = yaw_bias + gain * cfg.yaw * wave[0]
            out[row, 1] = pitch_bias + gain * nod * cfg.pitch * wave[1]
            out[row, 2] = gain * cfg.roll * wave[2]
            if frame >= self._next_blink:
                self._blink_start = frame
                self._next_blink = frame + self._draw_blink_gap()
            out[row, 3] = self._blink(frame)
            out[row, 4:6] = self._glance(frame)
            out[row, 6] = brow * self._raise(frame, surge)
            out[row, 7] = knit
            self._frame += 1
        return out

    def _raise(self, frame: int, surge: float) -> float:
        """The brows lift with an emphasis in the voice (a surge of level), at most every two seconds: up in
        0.1 s, held, down over half a second."""
        cfg = self.config
        if surge > cfg.brow_surge and frame - self._raised_at > 2 * cfg.fps:
            self._raised_at = frame
        t = (frame - self._raised_at) / cfg.fps
        return cfg.brow_lift * float(np.clip(min(t / 0.1, (0.8 - t) / 0.5), 0.0, 1.0))

    def _glance(self, frame: int) -> np.ndarray:
        """Gaze: fixations held for a second or more, joined by saccades of a frame or two; mostly towards the
        viewer, and more so while speaking."""
        cfg = self.config
        if frame >= self._next_glance:
            low, high = cfg.gaze_interval_s
            self._next_glance = frame + int(self._gaze_rng.uniform(low, high) * cfg.fps)
            reach = np.array([cfg.gaze_x, cfg.gaze_y]) * (1.0 - 0.5 * min(self._activity * 2, 1.0))
            away = self._gaze_rng.random() < 0.6
            self._gaze_target = self._gaze_rng.uniform(-1, 1, 2) * reach if away else np.zeros(2)
        self._gaze += 0.6 * (self._gaze_target - self._gaze)
        return self._gaze
