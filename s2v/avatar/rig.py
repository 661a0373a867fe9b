"""The avatar rig: displacement bases, per-pixel maps and colours the renderer animates the photo with.

Everything here is computed once per photo from its 68 landmarks, in head-crop pixels, and handed to the
exported graph as plain float32 arrays, so the graph stays generic and every avatar-specific shape is data.

Conventions (shared with `s2v.render.warp`):
  * fields are *backward* offsets at full articulation: out(p) = photo(p + sum_k w_k F_k(p)). Over the whole crop
    (`avatar_fields`) they are in GridSample units (2/W, 2/H per pixel) with x, y interleaved and follow the rest
    grid (the pixel centres, weight 1), so one matrix product gives the sampling grid; at the window pixels (rows
    of the eye and mouth maps) they are in pixels;
  * the face frame has u along the eye line (towards image right) and v down the face, rotated by the
    photo's own head roll (`face_cos`, `face_sin`);
  * the mouth splits at a curve S(u): the lips' meeting line, or the lower edge of the photo's upper teeth.
    `mouth_dist` = v - S(u). Upper-lip bases act above S and lower-lip bases below (the side is judged after the
    head, spread and pucker bases, which move the line itself); pixels that end up sampling the other side of S
    than their own form the lip gap, where the graph paints the inside of the mouth;
  * which side of S a pixel is on changes as the head moves, and eyelids close nonlinearly, so both are worked out
    per frame, on "window" pixels only: boxes around the eyes and around the lips (`avatar_pixels` lists the two
    slots each pixel i = y * W + x has in the interleaved sampling grid, 2i and 2i + 1, eye pixels first;
    `avatar_eye_maps` and `avatar_mouth_maps` hold their values and field samples). Outside
    the mouth box every lip basis is already cut to its own side of S, so the whole-crop product needs no choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from s2v.avatar.colours import cheeks, luma, skin_colour, toothlike
from s2v.avatar.eyes import brows, eyelids, irises
from s2v.avatar.face_geometry import FaceFrame, box_of, interp, ramp

RIG_VERSION = 22  # part of every avatar id: stored avatars are rebuilt when the rig's layout or shapes change

FIELD_NAMES: tuple[str, ...] = (
    "head_yaw",  # per radian: depth-weighted sideways slide of the face inside a static silhouette
    "head_pitch",  # per radian: depth-weighted vertical slide
    "head_roll",  # per radian: rotation about the neck, masked to the head
    "lip_raise",  # upper lip lifted (also the small lift that comes with an open jaw)
    "lip_close_upper",  # upper lip down to the split line (closes a smiling photo's mouth over its teeth)
    "lip_spread",  # smile: mouth wider, lips thinner, corners up
    "lip_pucker",  # rounding: mouth narrower, lips fuller, a smile's corners down
    "jaw",  # lower lip, chin and jaw down, fading at the cheeks and neck
    "jaw_lower_lip",  # the lower lip's own share of `jaw`, subtracted when the lips must stay closed
    "lip_close_lower",  # lower lip up to the split line
    "lip_tuck",  # lower lip up under the upper teeth (f, v)
    "gaze_x",  # irises sideways, inside the eye opening (the lids and the eye corners stay)
    "gaze_y",  # irises up or down
    "brow_raise",  # brows up, the forehead above them folding
    "brow_knit",  # inner brows towards the nose and down
)
HEAD_FIELDS = slice(0, 3)
UPPER_FIELDS = slice(3, 5)  # act above S only
SHARED_FIELDS = slice(5, 7)  # continuous across S: they move the lip line itself
LOWER_FIELDS = slice(7, 11)  # act below S only

EYE_MAP_NAMES: tuple[str, ...] = (  # values at the eye pixels; then the K x 2 field values there (pixels)
    "grid_x",  # the pixel's centre in grid units
    "grid_y",
    "lid_dist",  # v below the upper eyelid margin, px
    "lid_dist_dx",  # its gradient, for a first-order value after the head moved
    "lid_dist_dy",
    "lid_height",  # eye opening (px) the closing lid travels, 0 beyond the eye corners
    "lid_crease",  # how far above the margin the lid skin starts (px); it unfolds down over the eye
)
MOUTH_MAP_NAMES: tuple[str, ...] = (  # values at the mouth pixels; then the K x 2 field values there (pixels)
    "grid_x",
    "grid_y",
    "mouth_dist",  # v - S(u), px
    "mouth_dist_dx",  # its gradient, for a first-order value after the head moved
    "mouth_dist_dy",
    "mouth_dist_uu",  # and its second derivative along the lips, halved: the lip line curves, most at the corners
    "mouth_u",  # px along the lips from their centre: a gap opens only within lip_half_width of it
    "teeth_line",  # upper teeth show where mouth_dist < teeth_line
    "teeth_shade",  # teeth brightness across the mouth (darker into the corners, tooth gaps)
    "lower_teeth",  # width profile of the lower teeth hint
    "tongue",  # height profile of the tongue (0..1)
    "cavity_shade",  # brightness of the mouth cavity across the mouth
    "photo_teeth_r",  # the photo's own teeth where it showed them (before its lips were closed), pixel values
    "photo_teeth_g",
    "photo_teeth_b",
    "photo_teeth",  # 0..1: how much of the drawn upper teeth is the photo's own there
)

GEOMETRY_NAMES: tuple[str, ...] = (  # colours in pixel values (0..255)
    "grid_dx",  # grid units per pixel: 2 / W
    "grid_dy",  # 2 / H
    "face_cos",
    "face_sin",
    "teeth_r",
    "teeth_g",
    "teeth_b",
    "cavity_r",
    "cavity_g",
    "cavity_b",
    "tongue_r",
    "tongue_g",
    "tongue_b",
    "lip_half_width",  # px, between the inner lip corners
    "synthetic_teeth",  # 1 paints upper teeth in the gap; 0 when the photo already shows them above S
    "lower_teeth_px",  # lower teeth band height at jaw_open = 1
    "tongue_px",  # tongue height at jaw_open = 1
)


@dataclass
class Rig:
    fields: np.ndarray  # [1 + K, H, W, 2] float32, grid units: the rest grid, then the bases
    pixels: np.ndarray  # [2 (Pe + Pm)] float32 grid slots 2i, 2i + 1 of each pixel i = y * W + x: eyes, then mouth
    eye_maps: np.ndarray  # [len(EYE_MAP_NAMES) + 2K, Pe] float32
    mouth_maps: np.ndarray  # [len(MOUTH_MAP_NAMES) + 2K, Pm] float32
    geometry: np.ndarray  # [len(GEOMETRY_NAMES)] float32
    info: dict


def _lip_line(quad: np.ndarray, u: np.ndarray, u0: float, u1: float, tau: float) -> tuple[np.ndarray, ...]:
    """The split line S(u), S'(u) and S''(u): the fitted parabola between the inner lip corners, continued beyond them
    along its tangent with a slope that dies out over `tau`, so S stays smooth (first-order steps across the corners
    stay accurate) and bounded (a smile's upturn does not climb into the cheeks)."""
    d1 = np.polyder(quad)
    s = np.polyval(quad, np.clip(u, u0, u1))
    ds = np.polyval(d1, np.clip(u, u0, u1))
    dds = np.full_like(u, 2 * quad[0])
    for edge, sign in ((u0, -1.0), (u1, 1.0)):
        beyond = np.maximum(sign * (u - edge), 0.0)
        slope, fade = np.polyval(d1, edge), np.exp(-beyond / tau)
        out = beyond > 0
        s = np.where(out, np.polyval(quad, edge) + sign * slope * tau * (1 - fade), s)
        ds = np.where(out, slope * fade, ds)
        dds = np.where(out, -sign * slope / tau * fade, dds)
    return s, ds, dds


def _split(img: np.ndarray, lm: np.ndarray, fr: FaceFrame, skin: np.ndarray) -> tuple[float, bool, bool]:
    """Where between the inner lips the mouth splits (0 upper lip .. 1 lower lip), whether the photo's mouth is
    open at all (landmarks on closed lips often leave a few pixels between them), and whether it shows upper teeth
    above the split.

    Upper teeth stay with the skull and lower ones go with the jaw, so a smile that shows teeth splits at the
    dark gap between the rows when there is one, or just above the lower lip when only upper teeth show; lips
    that meet split at their darkest line. Teeth are told from lips by being bright and nearly colourless.
    """
    top, bot = lm[62], lm[66]
    height = float(np.linalg.norm(bot - top))
    if height < 3.0:
        return 0.5, False, False
    ts = np.linspace(0.0, 1.0, max(int(height * 2), 8))
    cols = []
    for du in (-2.0, 0.0, 2.0):  # a few columns around the centre, averaged
        pts = top[None] + du * np.array([fr.c, fr.s]) + ts[:, None] * (bot - top)[None]
        xi = np.clip(np.round(pts[:, 0]).astype(int), 0, img.shape[1] - 1)
        yi = np.clip(np.round(pts[:, 1]).astype(int), 0, img.shape[0] - 1)
        cols.append(img[yi, xi].astype(np.float64) / 255)
    rgb = np.mean(cols, axis=0)
    lum = np.convolve(luma(rgb), np.ones(3) / 3, mode="same")
    toothy = toothlike(rgb, skin)
    k = int(np.argmin(np.where((ts > 0.15) & (ts < 0.95), lum, np.inf)))
    dark_gap = lum[k] < 0.6 * float(lum.max())
    t_split = float(ts[k]) if dark_gap or toothy.mean() < 0.3 else 0.92
    upper = toothy[ts < t_split]
    # landmarks on a soft (upscaled) photo often sit inside the lips' red: a third of the line is enough
    teeth = bool(upper.size and upper.sum() * height / (len(ts) - 1) >= 3.0 and upper.mean() >= 0.35)
    return t_split, dark_gap or teeth, teeth


def mouth_is_open(img: np.ndarray, lm: np.ndarray) -> bool:
    """Whether the photo's lips are apart (teeth or a dark gap between them), as `build_rig` would judge it."""
    lm = lm.astype(np.float64)
    return _split(img, lm, FaceFrame.level_with_eyes(lm, *img.shape[:2]), skin_colour(img, lm))[1]


def _own_teeth(open_photo: np.ndarray | None, skin: np.ndarray, h: int, w: int) -> list[np.ndarray]:
    """The photo's teeth, r, g, b (pixel values) and how sure (0..1, soft-edged), where it showed them."""
    if open_photo is None:
        return [np.zeros((h, w))] * 4
    rgb = open_photo.astype(np.float64)
    teeth = cv2.GaussianBlur(toothlike(rgb / 255, skin).astype(np.float64), (0, 0), 0.7)
    return [rgb[..., 0], rgb[..., 1], rgb[..., 2], teeth]


def _head(fr: FaceFrame, lm: np.ndarray, fw: float) -> tuple[np.ndarray, np.ndarray]:
    """Depth of each pixel in front of the neck (px), for yaw and pitch, and the roll field (per radian).

    The head is a flattened ellipsoid plus a nose: turning it slides the face sideways inside a silhouette that
    stays put, more at the nose tip than at the cheeks. Roll turns the head about a pivot under the chin."""
    eye_mid = (lm[36:42].mean(0) + lm[42:48].mean(0)) / 2
    uh, vh = fr.uv((lm[0] + lm[16]) / 2)
    eyes_v = float(fr.uv((lm[0] + lm[16]) / 2, eye_mid[None])[1][0])
    r = np.sqrt((uh / (0.66 * fw)) ** 2 + ((vh - eyes_v + 0.05 * fw) / (0.92 * fw)) ** 2)
    depth = 0.5 * fw * np.sqrt(np.clip(1 - r**3, 0, 1))
    un, vn = fr.uv((lm[29] + lm[30]) / 2)
    depth += 0.16 * fw * np.exp(-0.5 * ((un / (0.07 * fw)) ** 2 + (vn / (0.12 * fw)) ** 2))
    pivot = lm[8] + 0.1 * fw * np.array([-fr.s, fr.c])
    roll = np.stack([-(fr.y - pivot[1]), fr.x - pivot[0]]) * (1 - ramp(0.9, 1.15, r))
    return depth, roll


def build_rig(img: np.ndarray, lm: np.ndarray, teeth_rgb: np.ndarray | None = None,
              open_photo: np.ndarray | None = None) -> Rig:
    """Bases, window maps and colours for a head crop `img` (H x W x 3 uint8) with landmarks `lm` [68, 2] in its
    pixels. `open_photo` is the same crop before its lips were closed, if they were: upper teeth stay with the
    skull, so where it showed teeth the drawn ones are its own, pixel for pixel; elsewhere they take `teeth_rgb`
    (0..255, the colour of those teeth) or else a colour from the skin's light. Sizes scale with the face width,
    so the rig behaves the same at any output resolution."""
    h, w = img.shape[:2]
    lm = lm.astype(np.float64)
    fr = FaceFrame.level_with_eyes(lm, h, w)
    fw = float(np.linalg.norm(lm[16] - lm[0]))  # face width at the ears
    margin = 0.08 * fw  # how far head motion can shift the mouth: its window reaches this far around the lips
    border = np.minimum.reduce([fr.x, fr.y, w - 1 - fr.x, h - 1 - fr.y])
    taper = ramp(2.0, 2.0 + 0.07 * min(h, w), border)  # every field is exactly 0 on the crop's rim

    # ---- mouth geometry in the face frame, origin between the outer mouth corners
    o = (lm[48] + lm[54]) / 2
    U, V = fr.uv(o)
    P = np.stack(fr.uv(o, lm), -1)  # landmarks in (u, v)
    hw = float(P[54, 0] - P[48, 0]) / 2
    mw = 2 * hw
    ui0, ui1 = float(P[60, 0]), float(P[64, 0])
    uc, hw_l = (ui0 + ui1) / 2, max((ui1 - ui0) / 2 * 1.02 + 0.5, 2.0)
    up_idx, lo_idx = [60, 61, 62, 63, 64], [60, 67, 66, 65, 64]
    sides = cheeks(img, lm)
    skin = np.median(np.concatenate(sides), axis=0)
    t_split, photo_open, photo_teeth = _split(img, lm, fr, skin)
    su = P[up_idx, 0]
    between = [P[a, 1] + t_split * (P[b, 1] - P[a, 1]) for a, b in ((61, 67), (62, 66), (63, 65))]
    sv = np.array([P[60, 1], *between, P[64, 1]])
    quad = np.polyfit(su, sv, 2)
    S, dS, ddS = _lip_line(quad, U, ui0, ui1, 0.3 * (ui1 - ui0))
    D = V - S
    Dx, Dy = fr.grad(dS)
    S0 = float(np.polyval(quad, uc))
    inside = (U > ui0) & (U < ui1) & photo_open  # closed lips have nothing to close
    h_up = np.where(inside, np.maximum(S - interp(U, P[up_idx, 0], P[up_idx, 1]), 0.0), 0.0)
    h_lo = np.where(inside, np.maximum(interp(U, P[lo_idx, 0], P[lo_idx, 1]) - S, 0.0), 0.0)

    au = np.abs(U - uc)
    xn = (U - uc) / hw_l
    lens = np.clip(1 - xn**2, 0, 1) ** 0.7  # how far each column of the lips parts
    d_top = max(S0 - float(P[51, 1]), 2.0)  # split to the top of the upper lip
    d_nose = max(S0 - float(P[33, 1]), d_top + 2.0)  # split to the nose base
    d_bot = max(float(P[57, 1]) - S0, 2.0)  # split to the bottom of the lower lip
    d_chin = max(float(P[8, 1]) - S0, d_bot + 4.0)
    ext = 0.07 * fw  # each lip's bases reach this far across S, for pixels the head motion carries over
    f_up = ramp(-d_nose, -d_top, D) * ramp(2 * ext, ext, D)  # upper lip moves rigidly, the philtrum absorbs it
    t_chin = ramp(d_bot, d_chin, D)  # 0 on the lower lip, 1 at the chin
    low_part = (1 - t_chin) * ramp(-2 * ext, -ext, D)

    jaw_amp = 0.16 * fw
    uj = (P[5, 0] + P[11, 0]) / 2
    hj = max((P[11, 0] - P[5, 0]) / 2, hw)
    chin_w = 1 - ramp(0.55 * hj, 1.1 * hj, np.abs(U - uj))
    jaw_idx = list(range(3, 14))
    v_jaw = interp(U, P[jaw_idx, 0], P[jaw_idx, 1])
    neck = 1 - ramp(v_jaw, v_jaw + max(1.6 * jaw_amp, 0.2 * fw), V)
    jaw = jaw_amp * (lens + t_chin * (1.15 * chin_w - lens)) * neck * ramp(-2 * ext, -ext, D)

    raise_amp = float(np.clip(0.6 * (P[51, 1] - P[33, 1]), 1.0, 0.045 * fw))
    if photo_teeth:  # the lift would carry the photo's teeth with the lip: keep it a hint
        raise_amp *= 0.3
    raise_w = np.clip(1 - xn**2, 0, 1) ** 0.5
    press = 0.02 * fw * lens
    # closing a smile brings the upper lip down by its teeth's height: the red of the lip stretches with the lower
    # third of the philtrum, down to the lip's edge, so no row folds over another and the closed lips stay lips
    # (stretched from the nose base, the skin took most of it: a pale band, and dlib's identity distance 0.38
    # on the built-in avatar's /m/, against 0.25 now)
    h_edge = min(float((h_up + press).max()), d_nose - 2.0)
    f_close = ramp(-max(d_top + 0.35 * (d_nose - d_top), h_edge + 2.0), -h_edge, D) * ramp(2 * ext, ext, D)
    lip_lo = max(float(P[57, 1] - interp(np.array([uc]), P[lo_idx, 0], P[lo_idx, 1])[0]), 2.0)

    # spread widens around the mouth centre, thins the lips towards S and lifts the corners; pucker narrows the
    # mouth and fills the lips out
    su_shape = np.where(au < hw, U - uc, np.sign(U - uc) * hw * np.exp(-(((au - hw) / (0.9 * hw)) ** 2)))
    win_v = ramp(-d_nose, -d_top, D) * (1 - ramp(d_bot, d_chin, D))
    lip_win = ramp(-1.8 * d_top, -d_top, D) * (1 - ramp(d_bot, 1.8 * d_bot, D)) * (1 - ramp(0.8 * hw, 1.2 * hw, au))
    corner = np.minimum((au / hw) ** 2, 1) * np.exp(-((np.maximum(au - hw, 0) / (0.8 * hw)) ** 2))

    depth, roll = _head(fr, lm, fw)

    forward = [  # forward displacements of content, image (x, y)
        fr.to_xy(depth, 0.0),
        fr.to_xy(0.0, depth),
        roll,
        fr.to_xy(0.0, -raise_amp * raise_w * f_up),
        fr.to_xy(0.0, (h_up + press) * f_close),
        fr.to_xy(0.14 * su_shape * win_v, -0.12 * D * lip_win - 0.025 * fw * corner * win_v),
        fr.to_xy(-0.3 * su_shape * win_v, 0.18 * D * lip_win + 0.02 * fw * corner * win_v),
        fr.to_xy(0.0, jaw),
        fr.to_xy(0.0, jaw_amp * lens * low_part),
        fr.to_xy(0.0, -(h_lo + press) * low_part),
        fr.to_xy(0.0, -(h_lo + 0.35 * lip_lo * lens) * low_part),
        *irises(fr, P, U, V),
        *brows(fr, P, U, V, fw),
    ]
    fields = -np.stack(forward) * taper  # backward offsets, 0 on the rim

    lid, eye_boxes = eyelids(fr, P, U, V, fw)

    # ---- mouth interior, lit like this face
    mouth_box = box_of((au < hw_l + margin) & (D > -d_top - margin) & (D < 1.15 * jaw_amp + margin))
    lum_l, lum_r = (float(np.median(luma(c))) for c in sides)
    light = 1 + np.clip((lum_r - lum_l) / (lum_r + lum_l + 1e-6), -0.3, 0.3) * np.clip(xn, -1, 1)
    gaps = sum(np.exp(-0.5 * ((au - k * hw_l) / 0.7) ** 2) for k in (0.0, 0.3, 0.52))  # incisors' edges
    teeth_shade = (1 - 0.5 * np.clip(xn, -1, 1) ** 4) * (1 - 0.25 * np.clip(gaps, 0, 1)) * light
    # teeth take the hue of the light on this face at a little of its saturation (a neutral grey reads cold and
    # blue on a warm face), staying pale enough that teeth are still told from lips (`_split`)
    skin_n = skin / max(float(skin.max()), 1e-6)
    s_skin = float(1 - skin_n.min())
    k = min(0.45, 0.15 / max(s_skin, 1e-6))
    if teeth_rgb is None:
        teeth_rgb = 255 * float(np.clip(0.42 + 0.5 * luma(skin), 0.45, 0.86)) * (1 - k * (1 - skin_n))
    geometry = np.array(
        [2.0 / w, 2.0 / h, fr.c, fr.s, *teeth_rgb, *(255 * skin * [0.2, 0.09, 0.085])]
        + [*(255 * skin * [0.6, 0.36, 0.36]), hw_l, 0.0 if photo_teeth else 1.0, 0.04 * mw, 0.2 * mw],
        np.float32,
    )

    # ---- windows: per-frame work happens there; elsewhere each lip's bases are cut to their side of S
    mouth_win = mouth_box & (taper > 0)
    eye_win = eye_boxes & (taper > 0) & ~mouth_win
    fields[UPPER_FIELDS] *= np.where(mouth_win, 1.0, D < 0)
    fields[LOWER_FIELDS] *= np.where(mouth_win, 1.0, D >= 0)
    flat_eye, flat_mouth = np.flatnonzero(eye_win), np.flatnonzero(mouth_win)
    per_pixel = fields.reshape(-1, h * w)  # rows: field 0 x, field 0 y, field 1 x, ...
    grid_x, grid_y = (2 * fr.x + 1) / w - 1, (2 * fr.y + 1) / h - 1
    eye_maps = [grid_x, grid_y, *(lid[k] for k in ("dist", "dx", "dy", "height", "crease"))]
    eye_maps = [m.reshape(-1)[flat_eye] for m in eye_maps]
    mouth_maps = [
        grid_x,
        grid_y,
        D,
        Dx,
        Dy,
        -0.5 * ddS,
        U - uc,
        mw * (0.09 - 0.11 * np.clip(xn**2, 0, 1.5)),
        teeth_shade,
        1 - ramp(0.3 * hw_l, 0.6 * hw_l, au),
        np.sqrt(np.clip(1 - (xn / 0.8) ** 2, 0, 1)),
        (1 - 0.6 * np.clip(xn**2, 0, 1)) * light,
        *_own_teeth(open_photo, skin, h, w),
    ]
    mouth_maps = [m.reshape(-1)[flat_mouth] for m in mouth_maps]
    grid_units = np.array([2.0 / w, 2.0 / h]).reshape(1, 1, 1, 2)
    rest_grid = np.stack([grid_x, grid_y], -1)
    info = {
        "face_width_px": round(fw, 1),
        "face_roll_deg": round(float(np.degrees(np.arctan2(fr.s, fr.c))), 2),
        "mouth_centre": [round(float(o[0]), 1), round(float(o[1]), 1)],
        "mouth_half_width_px": round(hw, 1),
        "mouth_split": round(t_split, 2),
        "photo_mouth_open": bool(photo_open),
        "photo_shows_teeth": bool(photo_teeth),
        "jaw_px": round(jaw_amp, 1),
        "eye_pixels": int(flat_eye.size),
        "mouth_pixels": int(flat_mouth.size),
        "skin_rgb": [round(float(v), 3) for v in skin],
        "teeth_rgb": [round(float(v)) for v in teeth_rgb],
    }
    return Rig(
        np.concatenate([rest_grid[None], fields.transpose(0, 2, 3, 1) * grid_units]).astype(np.float32),
        (2 * np.concatenate([flat_eye, flat_mouth])[:, None] + [0, 1]).reshape(-1).astype(np.float32),
        np.concatenate([np.stack(eye_maps), per_pixel[:, flat_eye]]).astype(np.float32),
        np.concatenate([np.stack(mouth_maps), per_pixel[:, flat_mouth]]).astype(np.float32),
        geometry,
        info,
    )
