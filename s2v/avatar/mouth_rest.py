"""An open-mouthed photo's lips brought together before it is rigged, so the avatar talks from a closed mouth.

A talking face rests with its lips together: /p b m/ and pauses close them, and every opening starts from there.
A photo that smiles with its teeth, or was taken mid-word, starts from an open mouth instead, and closing it on
every frame means stretching a thin smiling lip over the teeth: on such photos the closed frames read as a pale
smear, neither lips nor teeth, and a face detector sees the mouth open and the person changed. So the photo's
mouth is closed once, at preparation, by moving each lip whole (its red kept, a little fuller) to a line between
them, the skin above the upper lip and below the lower one taking up the shift; the rig is then built on that
picture as on any closed-mouth photo, and the mouth's inside is drawn when it opens. (LivePortrait does the same
with its `lip_zero` step, closing the source's lips before animating it.)
"""

from __future__ import annotations

import cv2
import numpy as np

from s2v.avatar.colours import luma, saturation
from s2v.avatar.face_geometry import FaceFrame, interp, ramp

UPPER_INNER, LOWER_INNER = [60, 61, 62, 63, 64], [60, 67, 66, 65, 64]
UPPER_OUTER, LOWER_OUTER = [48, 49, 50, 51, 52, 53, 54], [48, 59, 58, 57, 56, 55, 54]
UPPER_SHARE = 0.5  # of the gap, travelled by the upper lip; the lower lip (and the jaw under it) takes the rest
BITE = 1.0  # px each lip's inner edge is moved past the meeting line: its last row is half teeth, half lip
LIP_STRETCH = 0.5  # share of each lip's travel its own red absorbs (thicker lips); the skin beyond takes the rest
SEAM_DARKEN = 0.25  # closed lips meet in a thin shadow


def close_lips(img: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The head crop `img` (H x W x 3 uint8) with its lips brought together, its 68 landmarks `lm` moved with
    them, and the colour (0..255) of the teeth the photo showed between them, if it showed any: the mouth's
    drawn inside takes them. The lips meet `UPPER_SHARE` of the way down the gap between them."""
    h, w = img.shape[:2]
    lm = lm.astype(np.float64)
    fr = FaceFrame.level_with_eyes(lm, h, w)
    o = (lm[48] + lm[54]) / 2
    U, V = fr.uv(o)
    P = np.stack(fr.uv(o, lm), -1)

    # per column of the mouth, a 1-D table over u: where each lip's inner edge is (dlib's inner points) and the
    # gap between them, smoothed so that the warp has no kinks at the landmarks
    u0, u1 = float(P[60, 0]), float(P[64, 0])
    us = np.linspace(P[48, 0] - 2, P[54, 0] + 2, 256)
    top = interp(us, P[UPPER_OUTER, 0], P[UPPER_OUTER, 1])  # outer edge of the upper lip
    bottom = interp(us, P[LOWER_OUTER, 0], P[LOWER_OUTER, 1])
    up = interp(us, P[UPPER_INNER, 0], P[UPPER_INNER, 1])
    lo = interp(us, P[LOWER_INNER, 0], P[LOWER_INNER, 1])
    between = (us > u0) & (us < u1)
    kernel = np.exp(-0.5 * (np.arange(-12, 13) / 4.0) ** 2)
    gap = np.convolve(np.where(between, np.maximum(lo - up, 0.0), 0.0), kernel / kernel.sum(), mode="same")
    meet = up + UPPER_SHARE * (lo - up)
    d_up = np.where(gap > 0.5, UPPER_SHARE * gap + BITE, 0.0)  # how far the upper lip comes down
    d_lo = np.where(gap > 0.5, (1 - UPPER_SHARE) * gap + BITE, 0.0)  # ...and the lower lip up
    nose = float(P[31:36, 1].mean())
    chin = float(P[8, 1])

    def column(table: np.ndarray) -> np.ndarray:
        return np.interp(U, us, table, left=0.0, right=0.0)

    M, DU, DL, T, B = (column(t) for t in (meet, d_up, d_lo, top, bottom))
    # backward: each lip stretches to fill LIP_STRETCH of its travel (a relaxed lip is fuller than a smiling
    # one) and the skin between it and the nose (or the chin) takes up the rest, smoothly, so no row folds over
    # another
    T2, B2 = T + (1 - LIP_STRETCH) * DU, B - (1 - LIP_STRETCH) * DL  # the lips' outer edges, moved
    up_lip = T + (V - T2) * (M - DU - T) / np.maximum(M - T2, 1e-3)
    up_skin = V - (1 - LIP_STRETCH) * DU * ramp(nose, T2, V)
    lo_lip = B - (B2 - V) * (B - M - DL) / np.maximum(B2 - M, 1e-3)
    lo_skin = V + (1 - LIP_STRETCH) * DL * (1 - ramp(B2, B + 0.5 * (chin - B), V))
    src_v = np.where(V < M, np.where(V < T2, up_skin, up_lip), np.where(V > B2, lo_skin, lo_lip))
    dv = np.where(DU + DL > 0, src_v - V, 0.0)
    src_x = fr.x - fr.s * dv
    src_y = fr.y + fr.c * dv
    closed = cv2.remap(img, src_x.astype(np.float32), src_y.astype(np.float32), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    seam = 1 - SEAM_DARKEN * np.exp(-0.5 * ((V - M) / 0.8) ** 2) * (column(gap) > 0.5)
    closed = np.clip(closed * seam[..., None] + 0.5, 0, 255).astype(np.uint8)

    teeth = _teeth_colour(img[(V > column(up)) & (V < column(lo)) & (column(gap) > 0.5)])

    moved = P.copy()
    for i in (61, 62, 63, 65, 66, 67):
        moved[i, 1] = np.interp(P[i, 0], us, meet)
    for i in UPPER_OUTER[1:-1]:
        moved[i, 1] += (1 - LIP_STRETCH) * np.interp(P[i, 0], us, d_up)
    for i in LOWER_OUTER[1:-1]:
        moved[i, 1] -= (1 - LIP_STRETCH) * np.interp(P[i, 0], us, d_lo)
    du, dvv = moved[:, 0] - P[:, 0], moved[:, 1] - P[:, 1]
    out = lm + np.stack([du * fr.c - dvv * fr.s, du * fr.s + dvv * fr.c], -1)
    return closed, out.astype(np.float32), teeth


def _teeth_colour(gap: np.ndarray) -> np.ndarray | None:
    """Median colour (0..255) of the bright, nearly colourless pixels [n, 3] between the lips; None when there are
    too few of them (a dark, open mouth) or they are not pale (the landmarks took a lip for the gap)."""
    rgb = gap.astype(np.float64) / 255
    if len(rgb) < 20:
        return None
    bright = rgb[luma(rgb) >= 0.85 * np.percentile(luma(rgb), 90)]
    colour = np.median(bright, axis=0)
    return 255 * colour if len(bright) >= 20 and saturation(colour) < 0.35 and colour.max() > 80 / 255 else None
