"""The renderer half of the exported graph: animate the photo's head crop by warping it.

One bilinear GridSample of the original-resolution crop moves the pixels; nothing is painted except the inside
of the mouth where the lips part. Where no basis reaches, the offset is exactly 0 and the output equals the photo,
so the face stays sharp and the crop pastes back seamlessly. The rig arrays come from `s2v.avatar.rig`; its
docstring has the conventions.

Per frame: one matrix product of the basis weights with the whole-crop fields gives the sampling grid; on a few
thousand pixels around the eyes and the lips the grid is then recomputed where motion is not linear (an eyelid
margin, the side of the lip line a pixel falls on once the head has moved) and scattered back. Which side of the
lip line a point lies on after an offset is estimated to second order from precomputed derivatives rather than
with a second GridSample, which would cost as much as the warp itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2v.avatar.rig import (
    EYE_MAP_NAMES,
    FIELD_NAMES,
    GEOMETRY_NAMES,
    HEAD_FIELDS,
    LOWER_FIELDS,
    MOUTH_MAP_NAMES,
    SHARED_FIELDS,
    UPPER_FIELDS,
)
from s2v.contract import CONTROL_CHANNELS, MOTION_CHANNELS

_M = {name: i for i, name in enumerate(MOTION_CHANNELS)}
_C = {name: i for i, name in enumerate(CONTROL_CHANNELS)}
_GEO = {name: i for i, name in enumerate(GEOMETRY_NAMES)}


def _block_masks() -> torch.Tensor:
    """[3, K] masks over the bases: those that move the lip line (head, spread, pucker), upper lip, lower lip."""
    masks = torch.zeros(3, len(FIELD_NAMES))
    for row, parts in enumerate(((HEAD_FIELDS, SHARED_FIELDS), (UPPER_FIELDS,), (LOWER_FIELDS,))):
        for part in parts:
            masks[row, part] = 1.0
    return masks


_BLOCKS = _block_masks()


GAP_EDGE = 1.5  # px over which the lip gap fades in: a 1 px step reads as a cut-out at 25 fps
JAW_GAIN = 0.6  # the opening at jaw j is j * (1 + JAW_GAIN * (1 - j)): x1.4 at 0.3, x1.3 at 0.5, x1 at 1
# Lips pressed together bring the jaw up with them: the network's /p b m/ often keep some jaw from the vowel
# around them, and drawn under sealed lips that jaw only stretches the chin (dlib read a different face, and a
# smiling photo's lips then failed to meet). Chosen on the built-in photo and Hopper, three voices: p/b/m seen
# shut 0.25-0.42 -> 0.48-0.75 on the first, identity unchanged or closer.
JAW_UNDER_CLOSURE = 0.6
FIRM = (0.3, 0.7)  # lip closure under the first value leaves the lips alone, over the second seals them


def _firm(closure: torch.Tensor) -> torch.Tensor:
    """Closure through a smoothstep over FIRM. The network's closures in /p b m/ mostly run over 0.7, while in
    the middle of vowels it hedges with 0.2-0.4: drawn as they are, those hedges shut a third of an open mouth
    and a 0.7 leaves a slit where the lips should meet. Chosen on the pixels of one held-out voice (Debian's
    Asterisk prompts) on two photos, against a linear closure: p/b/m shut as often, open vowels open more."""
    t = ((closure - FIRM[0]) / (FIRM[1] - FIRM[0])).clamp(0.0, 1.0)
    return t * t * (3 - 2 * t)


def _soft(x: torch.Tensor, width: float = 1.0) -> torch.Tensor:
    """Anti-aliased step `width` px wide: 0 for x <= -width / 2, 1 for x >= width / 2."""
    return (x / width + 0.5).clamp(0.0, 1.0)


class WarpRenderer(nn.Module):
    """motion [n, 6], controls [n, 4] and the avatar's arrays (contract.AVATAR_INPUTS, in order) -> RGB frames
    uint8 [n, H, W, 3] of the head crop. Exports with torch.onnx.export(dynamo=False), opset 17; n, H, W and the
    window sizes may all vary."""

    def forward(
        self,
        motion: torch.Tensor,
        controls: torch.Tensor,
        avatar_image: torch.Tensor,
        avatar_fields: torch.Tensor,
        avatar_pixels: torch.Tensor,
        avatar_eye_maps: torch.Tensor,
        avatar_mouth_maps: torch.Tensor,
        avatar_geometry: torch.Tensor,
    ) -> torch.Tensor:
        n, k = motion.shape[0], len(FIELD_NAMES)
        h, w = avatar_image.shape[1], avatar_image.shape[2]
        weights, blocks, blink, opening, teeth_show = self._weights(motion, controls)
        geo = avatar_geometry

        # Whole crop: one product gives the sampling grid (basis 0 is the rest grid, at weight 1).
        one = torch.ones_like(weights[:, :1])
        grid = torch.matmul(torch.cat([one, weights], dim=1), avatar_fields.reshape(k + 1, h * w * 2))

        # Eye pixels: the lid skin between crease and margin unfolds down to a margin at blink * lid_height; the
        # brow above stays, and so does the eye below the new margin. The unfolding is 1:1 at the lashes (so they
        # stay a thin line) and stretches the skin near the crease: with a = height above the crease, L = crease +
        # travel, the pixel samples a * crease^2 / (L^2 - travel * a) above the crease.
        qe, pe = len(EYE_MAP_NAMES), avatar_eye_maps.shape[1]
        eye = dict(zip(EYE_MAP_NAMES, avatar_eye_maps[:qe].unbind(0)))
        moved = torch.matmul(weights, avatar_eye_maps[qe:].reshape(k, 2 * pe)).reshape(n, 2, pe)
        lid_dist = eye["lid_dist"] + eye["lid_dist_dx"] * moved[:, 0] + eye["lid_dist_dy"] * moved[:, 1]
        travel = blink.unsqueeze(1) * eye["lid_height"]
        crease = eye["lid_crease"]
        a = (lid_dist + crease).clamp(min=0.0)
        reach = crease + travel
        pull = (a - a * crease * crease / (reach * reach - travel * a + 1e-3)) * _soft(travel - lid_dist)
        lids = moved + pull.unsqueeze(1) * torch.stack([geo[_GEO["face_sin"]], -geo[_GEO["face_cos"]]]).reshape(1, 2, 1)

        # Mouth pixels: upper-lip bases above the lip line as the head, spread and pucker moved it, lower-lip ones below.
        qm, pm = len(MOUTH_MAP_NAMES), avatar_mouth_maps.shape[1]
        mouth = dict(zip(MOUTH_MAP_NAMES, avatar_mouth_maps[:qm].unbind(0)))
        line, up, low = torch.matmul(blocks, avatar_mouth_maps[qm:].reshape(k, 2 * pm)).reshape(3, n, 2, pm).unbind(0)
        dist = self._lip_dist(mouth, geo, line)
        above = (0.5 - dist).clamp(0.0, 1.0)
        # each pixel takes one lip's offsets: a blend of two lips moving apart would sample what lies between them
        # (the teeth a closing smile hides) on the line where they meet
        lips = line + torch.where((dist < 0).unsqueeze(1), up, low)

        # Both windows replace their pixels of the grid, then one bilinear warp of the photo.
        scale = geo[_GEO["grid_dx"] : _GEO["grid_dy"] + 1].reshape(1, 2, 1)
        rest = torch.stack([torch.cat([eye["grid_x"], mouth["grid_x"]]), torch.cat([eye["grid_y"], mouth["grid_y"]])])
        at = (rest + torch.cat([lids, lips], dim=2) * scale).transpose(1, 2)
        slots = avatar_pixels.long().unsqueeze(0)
        grid = grid.scatter(1, slots.expand(n, 2 * (pe + pm)), at.reshape(n, 2 * (pe + pm)))
        # zeros + align_corners=False is ONNX Runtime's fast GridSample path (2.5x the others); every offset is
        # 0 on the crop's rim, so no sample reaches the zero padding.
        warped = F.grid_sample(
            avatar_image.unsqueeze(0).expand(n, 3, h, w),
            grid.reshape(n, h, w, 2),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        ).reshape(n, 3, h * w)

        # Lip gap: where a pixel sampled more of the other side of the lip line than lies under it at rest (so a
        # still mouth has no gap, not even on the line's anti-aliased pixels).
        src = self._lip_dist(mouth, geo, lips)
        to_low = _soft(src, GAP_EDGE) - _soft(dist, GAP_EDGE)
        to_up = _soft(-src, GAP_EDGE) - _soft(-dist, GAP_EDGE)
        # ...and only between the lip corners, which move with the head, for both the pixel and what it samples
        # (beyond the corners the lips are one: no side to cross).
        zone = self._between_corners(mouth, geo, line) * self._between_corners(mouth, geo, lips)
        gap = (zone * (to_up + above * (to_low - to_up)).clamp(min=0.0)).unsqueeze(1)
        at_mouth = (avatar_pixels[2 * pe :: 2] * 0.5).long()
        seen = warped.index_select(2, at_mouth)
        seen = seen + gap * (self._interior(mouth, geo, dist, src, above, opening, teeth_show) - seen)
        out = warped.scatter(2, at_mouth.expand(n, 3, pm), seen)
        # Photo pixel values carry +0.5 and stay within [0.5, 255.5], so the truncating cast rounds, no clamp needed.
        return out.to(torch.uint8).reshape(n, 3, h, w).permute(0, 2, 3, 1)

    @staticmethod
    def _lip_dist(mouth: dict[str, torch.Tensor], geo: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Signed distance below the lip line [n, P] of the points the mouth pixels sample after `offsets` [n, 2, P],
        to second order along the (curved) line."""
        along = geo[_GEO["face_cos"]] * offsets[:, 0] + geo[_GEO["face_sin"]] * offsets[:, 1]
        first = mouth["mouth_dist"] + mouth["mouth_dist_dx"] * offsets[:, 0] + mouth["mouth_dist_dy"] * offsets[:, 1]
        return first + mouth["mouth_dist_uu"] * along * along

    @staticmethod
    def _between_corners(mouth: dict[str, torch.Tensor], geo: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """1 where the points the mouth pixels sample after `offsets` lie between the inner lip corners."""
        along = mouth["mouth_u"] + geo[_GEO["face_cos"]] * offsets[:, 0] + geo[_GEO["face_sin"]] * offsets[:, 1]
        return ((geo[_GEO["lip_half_width"]] + 1 - along.abs()) * 0.5).clamp(0.0, 1.0)

    @staticmethod
    def _weights(motion: torch.Tensor, controls: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Basis weights [n, K], the same split in blocks [3n, K] (bases that move the lip line, upper-lip bases,
        lower-lip bases), blink [n], how far the lips part [n] and how much of the upper teeth they show [n].

        The nonlinear couplings between articulations live here, so the bases themselves stay linear."""
        n = motion.shape[0]
        jaw = motion[:, _M["jaw_open"]].clamp(0.0, 1.0)
        spread = motion[:, _M["lip_spread"]].clamp(-1.0, 1.0)
        closure = _firm(motion[:, _M["lip_closure"]])
        tuck = motion[:, _M["lip_tuck"]].clamp(0.0, 1.0)
        lift = motion[:, _M["upper_lip_raise"]].clamp(0.0, 1.0)
        pucker = (-spread).clamp(min=0.0)
        close = (closure + 0.2 * pucker).clamp(max=1.0)  # a pucker also narrows the opening
        cover = (close + tuck).clamp(max=1.0)  # the lower lip stops following the jaw
        jaw = jaw * (1 + JAW_GAIN * (1 - jaw) * (1 - cover))  # speech lives at jaw 0.2-0.6: show it (not in p/b/m)
        # rounded lips cover a smiling photo's upper teeth: the opening is between the lips, not below the teeth
        close_upper = (closure + 0.8 * pucker).clamp(max=1.0)
        head = controls[:, [_C["head_yaw"], _C["head_pitch"], _C["head_roll"]]]
        upper = [lift + 0.12 * jaw * (1 - close) + 0.3 * tuck, close_upper]
        shared = [spread.clamp(min=0.0), pucker]
        chin = jaw * (1 - JAW_UNDER_CLOSURE * close)
        lower = [chin, -chin * cover, close * (1 - tuck), tuck]
        gaze = controls[:, [_C["gaze_x"], _C["gaze_y"]]].clamp(-1.0, 1.0)
        brows = controls[:, [_C["brow_raise"], _C["brow_knit"]]].clamp(0.0, 1.0)
        weights = torch.cat([head, torch.stack(upper + shared + lower, dim=1), gaze, brows], dim=1)  # FIELD_NAMES
        blocks = (weights.unsqueeze(0) * _BLOCKS.unsqueeze(1)).reshape(3 * n, len(FIELD_NAMES))
        # rounded lips push forward over the teeth: the opening of an /uw/ is dark
        return weights, blocks, controls[:, _C["blink"]].clamp(0.0, 1.0), jaw * (1 - cover), 1 - 0.8 * pucker

    @staticmethod
    def _interior(
        m: dict[str, torch.Tensor],
        geo: torch.Tensor,
        dist: torch.Tensor,
        src: torch.Tensor,
        above: torch.Tensor,
        opening: torch.Tensor,
        teeth_show: torch.Tensor,
    ) -> torch.Tensor:
        """Mouth interior [n, 3, P] at the mouth pixels, pixel values + 0.5: dark cavity, tongue, lower teeth hint,
        and upper teeth that stay with the skull."""
        rgb = lambda name: geo[_GEO[name + "_r"] : _GEO[name + "_b"] + 1].reshape(1, 3, 1)  # noqa: E731
        above, dist, src = above.unsqueeze(1), dist.unsqueeze(1), src.unsqueeze(1)
        below = 1 - above
        over_lip = -src  # lower side: height above the lower lip's edge
        edge = (src * (2 * above - 1)).clamp(min=0.0)  # distance to the nearer lip edge, in the gap
        o = opening.reshape(-1, 1, 1)
        lower_teeth = ((o - 0.3) / 0.7).clamp(min=0.0) * geo[_GEO["lower_teeth_px"]] * m["lower_teeth"]
        tongue = ((o - 0.15) / 0.85).clamp(min=0.0) * geo[_GEO["tongue_px"]] * m["tongue"]
        # a barely parted mouth shows a dark slit with the teeth's edges in it, not a band of teeth: the band
        # grows with the opening, and the upper lip's shadow darkens the teeth under it
        teeth_h = m["teeth_line"] * (0.35 + 0.65 * (o / 0.6).clamp(max=1.0)) * teeth_show.reshape(-1, 1, 1)
        upper_teeth = _soft(teeth_h - dist) * geo[_GEO["synthetic_teeth"]]
        shadow = 0.75 + 0.25 * (dist / (teeth_h + 1.0)).clamp(0.0, 1.0)
        own = torch.stack([m["photo_teeth_r"], m["photo_teeth_g"], m["photo_teeth_b"]]).unsqueeze(0)
        teeth = rgb("teeth") * m["teeth_shade"]
        teeth = (teeth + m["photo_teeth"] * (own - teeth)) * shadow  # the photo's own teeth where it showed them
        # dark cavity, lit red just inside the lips and fading into the throat
        col = rgb("cavity") * (m["cavity_shade"] * (1 + 1.6 * torch.exp(-edge / 3.0)))
        tongue_col = rgb("tongue") * (m["cavity_shade"] * (1 - 0.5 * (over_lip / (tongue + 1)).clamp(0.0, 1.0)))
        col = col + (_soft(tongue - over_lip) * below) * (tongue_col - col)
        col = col + (_soft(lower_teeth - over_lip) * below) * (0.9 * teeth - col)
        col = col + upper_teeth * (teeth - col)
        return col.clamp(0.0, 255.0) + 0.5
