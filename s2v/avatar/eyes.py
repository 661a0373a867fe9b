"""The eyes' part of the rig: eyelid maps for blinks, the fields that move the irises for gaze, and the brows."""

from __future__ import annotations

import numpy as np

from s2v.avatar.face_geometry import FaceFrame, box_of, ramp

# dlib's points for each eye, image-left first: upper lid and lower lid (corner to corner), brow (outer to inner)
EYES = (
    ([36, 37, 38, 39], [36, 41, 40, 39], [17, 18, 19, 20, 21]),
    ([42, 43, 44, 45], [42, 47, 46, 45], [26, 25, 24, 23, 22]),
)


def eyelids(
    fr: FaceFrame, P: np.ndarray, U: np.ndarray, V: np.ndarray, fw: float
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Eyelid maps (see EYE_MAP_NAMES) in a box around each eye, and the union of the boxes.

    Lid curves are parabolas through the lid landmarks (P, in the face frame of U, V). The closing travel is the
    eye's opening, widened towards the corners and carried a little past the lower lid so a shut eye shows no
    white; the lid skin that unfolds over the eye starts at a crease above the margin, short of the brow."""
    lid = {k: np.zeros_like(U) for k in ("dist", "dx", "dy", "height", "crease")}
    boxes = np.zeros_like(U, bool)
    mid_u = (P[36:42, 0].mean() + P[42:48, 0].mean()) / 2
    for (upper, lower, brow), side in zip(EYES, (U < mid_u, U >= mid_u)):
        pu, pv = P[upper, 0], P[upper, 1]
        e0, e1 = float(min(pu[0], pu[-1])), float(max(pu[0], pu[-1]))
        cu, cl = np.polyfit(pu, pv, 2), np.polyfit(P[lower, 0], P[lower, 1], 2)
        ucl = np.clip(U, e0, e1)
        v_up = np.polyval(cu, ucl)
        height = np.maximum(np.polyval(cl, ucl) - v_up, 0.0)
        across = np.clip(1 - ((2 * U - e0 - e1) / (e1 - e0)) ** 2, 0, 1)
        height = np.maximum(height, height.max() * np.sqrt(across))
        height = (height * 1.3 + 2.0) * ramp(e0, e0 + 1.5, U) * ramp(e1, e1 - 1.5, U)
        h_max = float(height.max())
        brow_gap = float(np.mean(pv[1:3]) - np.mean(P[brow, 1]))
        crease = float(np.clip(1.1 * h_max, 2.0, 0.6 * brow_gap))
        e = V - v_up
        reach = 0.06 * fw  # how far head motion can carry the eye
        box = box_of(side & (U > e0 - reach) & (U < e1 + reach) & (e > -crease - reach) & (e < h_max + reach))
        boxes |= box
        gx, gy = fr.grad(np.where((U > e0) & (U < e1), np.polyval(np.polyder(cu), ucl), 0.0))
        for key, value in (("dist", e), ("dx", gx), ("dy", gy), ("height", height), ("crease", crease)):
            lid[key] = np.where(box, value, lid[key])
    return lid, boxes


def irises(fr: FaceFrame, P: np.ndarray, U: np.ndarray, V: np.ndarray) -> list[np.ndarray]:
    """Forward fields of gaze_x and gaze_y: what lies between the lids slides, most at the eye's centre and not at
    all at the lid margins and corners, so the iris moves over the white and the lids keep their shape. Travel:
    0.15 of the eye's width sideways, 0.08 up or down (the lids hide the rest)."""
    bump = np.zeros_like(U)
    width = 0.0
    for upper, lower, _ in EYES:
        e0, e1 = float(P[upper, 0].min()), float(P[upper, 0].max())
        top = np.polyval(np.polyfit(P[upper, 0], P[upper, 1], 2), U)
        bottom = np.polyval(np.polyfit(P[lower, 0], P[lower, 1], 2), U)
        across = np.clip((U - e0) / (e1 - e0), 0, 1)
        down = np.clip((V - top) / np.maximum(bottom - top, 1e-3), 0, 1)
        inside = (U > e0) & (U < e1) & (V > top) & (V < bottom)
        bump = np.where(inside, np.sin(np.pi * across) ** 0.8 * np.sin(np.pi * down) ** 0.5, bump)
        width = max(width, e1 - e0)
    return [fr.to_xy(0.15 * width * bump, 0.0), fr.to_xy(0.0, 0.08 * width * bump)]


def brows(fr: FaceFrame, P: np.ndarray, U: np.ndarray, V: np.ndarray, fw: float) -> list[np.ndarray]:
    """Forward fields of brow_raise and brow_knit. The brow moves as a band; the forehead above it and the lid
    skin below it stretch, down to the upper lid's margin, which stays (so do the eyes). Raising lifts the
    band by 5 % of the face width; knitting pulls its inner half towards the nose and down."""
    lift, knit = np.zeros_like(U), np.zeros((2, *U.shape))
    mid = (P[21, 0] + P[22, 0]) / 2
    for upper, _, brow in EYES:
        u0, u1 = float(P[brow, 0].min()), float(P[brow, 0].max())
        line = np.polyval(np.polyfit(P[brow, 0], P[brow, 1], 2), np.clip(U, u0, u1))
        margin = np.polyval(np.polyfit(P[upper, 0], P[upper, 1], 2), np.clip(U, u0, u1))
        e = V - line  # below the brow line
        band = ramp(-0.3 * fw, -0.04 * fw, e) * ramp(np.maximum(0.9 * (margin - line), 0.03 * fw), 0.02 * fw, e)
        along = ramp(u0 - 0.12 * fw, u0, U) * ramp(u1 + 0.12 * fw, u1, U)
        weight = band * along
        lift = np.maximum(lift, weight)
        inner = ramp(P[brow[0], 0], P[brow[-1], 0], U)  # 0 at the outer end, 1 at the inner end
        knit += weight * inner * np.stack([np.sign(mid - U), np.ones_like(U)])
    return [fr.to_xy(0.0, -0.05 * fw * lift), fr.to_xy(0.03 * fw * knit[0], 0.02 * fw * knit[1])]
