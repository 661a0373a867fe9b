"""Face-aligned coordinates and the small smooth functions the rig's fields are built from."""

from __future__ import annotations

import numpy as np


def ramp(e0: float | np.ndarray, e1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    """Smoothstep from 0 at e0 to 1 at e1 (either order)."""
    t = np.clip((x - e0) / (e1 - e0 + 1e-9), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def interp(x: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    order = np.argsort(xs)
    return np.interp(x, xs[order], ys[order])


def box_of(mask: np.ndarray) -> np.ndarray:
    """The bounding rectangle of a mask, as a mask."""
    out = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    if ys.size:
        out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
    return out


class FaceFrame:
    """Face-aligned coordinates (u along the eyes, v down the face) around an origin, over the crop grid."""

    def __init__(self, angle: float, h: int, w: int):
        self.c, self.s = float(np.cos(angle)), float(np.sin(angle))
        self.y, self.x = np.mgrid[0:h, 0:w].astype(np.float64)

    @classmethod
    def level_with_eyes(cls, lm: np.ndarray, h: int, w: int) -> "FaceFrame":
        """The frame whose u runs along the line between the eye centres of 68 landmarks `lm`."""
        eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
        return cls(float(np.arctan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0])), h, w)

    def uv(self, o: np.ndarray, pts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        x, y = (self.x, self.y) if pts is None else (pts[..., 0], pts[..., 1])
        dx, dy = x - o[0], y - o[1]
        return dx * self.c + dy * self.s, -dx * self.s + dy * self.c

    def to_xy(self, du: np.ndarray | float, dv: np.ndarray | float) -> np.ndarray:
        """Face-frame vectors -> image (x, y), stacked [2, H, W]."""
        du, dv = du + 0 * self.x, dv + 0 * self.x
        return np.stack([du * self.c - dv * self.s, du * self.s + dv * self.c])

    def grad(self, slope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image gradient (d/dx, d/dy) of v - f(u), given f'(u)."""
        return -self.s - slope * self.c, self.c - slope * self.s
