"""Colours read off the photo: brightness, saturation, and the skin on the cheeks that other colours are judged by."""

from __future__ import annotations

import numpy as np


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def saturation(rgb: np.ndarray) -> np.ndarray:
    return (rgb.max(-1) - rgb.min(-1)) / np.maximum(rgb.max(-1), 1e-6)


def patch(img: np.ndarray, p: np.ndarray, r: float) -> np.ndarray:
    """Pixels (0..1) [n, 3] of the square of half-side `r` around `p`, inside the image."""
    h, w = img.shape[:2]
    x0, x1 = int(max(p[0] - r, 0)), int(min(p[0] + r + 1, w))
    y0, y1 = int(max(p[1] - r, 0)), int(min(p[1] + r + 1, h))
    return img[y0:y1, x0:x1].reshape(-1, 3).astype(np.float64) / 255


def cheeks(img: np.ndarray, lm: np.ndarray) -> list[np.ndarray]:
    """Pixels (0..1) of a patch on each cheek (68 landmarks `lm`): the skin colour and the light on either side."""
    fw = float(np.linalg.norm(lm[16] - lm[0]))
    l_cheek, r_cheek = (lm[1] + lm[3] + lm[31] + lm[49]) / 4, (lm[15] + lm[13] + lm[35] + lm[53]) / 4
    return [patch(img, p, 0.04 * fw) for p in (l_cheek, r_cheek)]


def skin_colour(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Median cheek colour (0..1, RGB)."""
    return np.median(np.concatenate(cheeks(img, lm)), axis=0)


def toothlike(rgb: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Pixels (0..1) as bright as the skin and much less coloured: teeth, told from lips and skin. In a grayscale
    photo nothing has colour, and brightness alone tells them."""
    return (luma(rgb) > 0.9 * luma(skin)) & (saturation(rgb) <= max(0.55 * float(saturation(skin)), 0.03))
