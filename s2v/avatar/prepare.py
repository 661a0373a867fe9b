"""One photo -> an `Avatar`: the output frame, where the head crop goes, and the rig arrays the graph animates.

Framing is portrait: the face spans `face_width` of the frame and the eyes sit at `eye_line` from the top. Only a
square around the head (`head_crop` face widths) is rendered per frame; the rest of the frame is the still
background, so warping cost scales with the head, not the frame.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from s2v.avatar.landmarks import find_faces
from s2v.avatar.rig import RIG_VERSION, build_rig
from s2v.contract import AVATAR_INPUTS

log = logging.getLogger(__name__)

MAX_BYTES = 30 * 1024 * 1024
WORK_MAX_SIDE = 4096  # larger photos are downscaled first: more pixels add nothing at these output sizes
MIN_FACE_PX = 64


class AvatarError(ValueError):
    """The photo cannot become an avatar; the message says why, in words a user can act on."""


@dataclass(frozen=True)
class AvatarConfig:
    width: int = 512  # output frame
    height: int = 512
    face_width: float = 0.35  # ear-to-ear face width as a fraction of min(width, height)
    eye_line: float = 0.40  # eyes' height from the top, as a fraction of height
    head_crop: float = 1.65  # side of the rendered head square, in face widths (1.75 keeps more hair; +10 % time)


@dataclass
class Avatar:
    id: str
    background: np.ndarray  # [height, width, 3] uint8 RGB: the full output frame
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the rendered head crop inside `background`
    inputs: dict[str, np.ndarray]  # float32 arrays keyed by contract.AVATAR_INPUTS
    info: dict = field(default_factory=dict)

    @property
    def crop_size(self) -> tuple[int, int]:
        """(height, width) of the frames the graph renders for this avatar."""
        return self.box[3] - self.box[1], self.box[2] - self.box[0]


def avatar_id(data: bytes, config: AvatarConfig) -> str:
    """Content-derived id: the same photo, config and rig version always give the same avatar."""
    h = hashlib.sha256(data)
    h.update(json.dumps(asdict(config), sort_keys=True).encode())
    h.update(f"rig{RIG_VERSION}".encode())
    return h.hexdigest()[:16]


def load_rgb(data: bytes) -> np.ndarray:
    """Decode any PIL-readable photo to upright RGB uint8, transparency composited on white."""
    if len(data) > MAX_BYTES:
        raise AvatarError(f"the image is {len(data) / 2**20:.1f} MB; the limit is {MAX_BYTES // 2**20} MB")
    try:
        with warnings.catch_warnings():
            # PIL's decompression-bomb guard, from its warning threshold on (~89 MP), before any pixel is decoded
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            im.draft("RGB", (WORK_MAX_SIDE, WORK_MAX_SIDE))  # JPEG decodes straight at a reduced scale
            im = ImageOps.exif_transpose(im)
            im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        limit = Image.MAX_IMAGE_PIXELS // 10**6
        raise AvatarError(f"the image has too many pixels to decode safely ({limit} MP max)") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise AvatarError(f"not a readable image ({e})") from e
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # high bit depth grey: stretch to 8 bit
        a = np.asarray(im, np.float32)
        lo, hi = float(a.min()), float(a.max())
        im = Image.fromarray(((a - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    im = im.convert("RGB")
    if max(im.size) > WORK_MAX_SIDE:
        im.thumbnail((WORK_MAX_SIDE, WORK_MAX_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(im, np.uint8).copy()


def _frame(rgb: np.ndarray, lm: np.ndarray, cfg: AvatarConfig) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scale and place the photo into the output frame; returns the frame, landmarks in it, and warnings.

    The source region is cut before resizing (a small face in a big photo would otherwise be upscaled whole),
    and the placement offset is whole pixels so the photo is resampled once.
    """
    W, H = cfg.width, cfg.height
    fw = float(np.linalg.norm(lm[16] - lm[0]))
    scale = cfg.face_width * min(W, H) / fw
    centre = np.array([(lm[0, 0] + lm[16, 0]) / 2, lm[36:48, 1].mean()])
    ax, ay = centre[0] - W / 2 / scale, centre[1] - cfg.eye_line * H / scale
    h, w = rgb.shape[:2]
    sx0, sy0 = int(max(np.floor(ax) - 2, 0)), int(max(np.floor(ay) - 2, 0))
    sx1, sy1 = int(min(np.ceil(ax + W / scale) + 2, w)), int(min(np.ceil(ay + H / scale) + 2, h))
    if sx1 <= sx0 or sy1 <= sy0:
        raise AvatarError("the face is too close to the photo's edge to frame")
    src = rgb[sy0:sy1, sx0:sx1]
    size = (max(round((sx1 - sx0) * scale), 1), max(round((sy1 - sy0) * scale), 1))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    img = cv2.resize(src, size, interpolation=interp)
    k = np.array([size[0] / (sx1 - sx0), size[1] / (sy1 - sy0)])
    lm_s = (lm - [sx0, sy0]) * k
    ox = int(round((centre[0] - sx0) * k[0] - W / 2))
    oy = int(round((centre[1] - sy0) * k[1] - cfg.eye_line * H))
    pad = (max(-oy, 0), max(oy + H - img.shape[0], 0), max(-ox, 0), max(ox + W - img.shape[1], 0))
    warn = []
    if max(pad) > 0.03 * min(W, H):  # a few replicated pixels are invisible; more is worth saying
        sides = [s for s, p in zip(("top", "bottom", "left", "right"), pad) if p]
        warn.append(f"photo ends inside the frame ({', '.join(sides)}): border extended")
    valid = cv2.copyMakeBorder(np.ones(img.shape[:2], np.uint8), *pad, cv2.BORDER_CONSTANT, value=0)
    img = cv2.copyMakeBorder(img, *pad, cv2.BORDER_REPLICATE)
    oy, ox = oy + pad[0], ox + pad[2]
    frame = img[oy : oy + H, ox : ox + W]
    if any(pad):  # replicated edges streak: fade them into a blur
        outside = 1 - valid[oy : oy + H, ox : ox + W]
        dist = cv2.distanceTransform(outside, cv2.DIST_L2, 5)
        blend = np.clip(dist / (0.06 * min(W, H)), 0, 1)[..., None]
        blurred = cv2.GaussianBlur(frame, (0, 0), 0.03 * min(W, H))
        frame = (frame * (1 - blend) + blurred * blend + 0.5).astype(np.uint8)
    return np.ascontiguousarray(frame), (lm_s - [ox - pad[2], oy - pad[0]]).astype(np.float32), warn


def _head_box(lm: np.ndarray, cfg: AvatarConfig) -> tuple[int, int, int, int]:
    """Square around the head, a multiple of 8 px, eyes at 45 % from its top, shifted (not shrunk) into the frame."""
    fw = float(np.linalg.norm(lm[16] - lm[0]))
    side = min(int(round(cfg.head_crop * fw / 8)) * 8, min(cfg.width, cfg.height) // 8 * 8)
    cx, eye_y = (lm[0, 0] + lm[16, 0]) / 2, float(lm[36:48, 1].mean())
    x0 = int(np.clip(round(cx - side / 2), 0, cfg.width - side))
    y0 = int(np.clip(round(eye_y - 0.45 * side), 0, cfg.height - side))
    return x0, y0, x0 + side, y0 + side


def prepare_avatar(data: bytes, config: AvatarConfig | None = None) -> Avatar:
    """Photo bytes -> Avatar. Raises AvatarError for what is not an image, has no face, or a face under 64 px."""
    cfg = config or AvatarConfig()
    rgb = load_rgb(data)
    faces = find_faces(rgb)
    if not faces:
        raise AvatarError("no face found: use a photo with one face looking roughly at the camera")
    face = faces[0]
    warn = []
    if len(faces) > 1:
        warn.append(f"found {len(faces)} faces, used the largest")
    if face.width < MIN_FACE_PX:
        raise AvatarError(f"the face is {face.width:.0f} px wide; at least {MIN_FACE_PX} px are needed")
    frame, lm, frame_warn = _frame(rgb, face.points, cfg)
    warn += frame_warn
    box = _head_box(lm, cfg)
    x0, y0, x1, y1 = box
    crop = frame[y0:y1, x0:x1]
    rig = build_rig(crop, lm - [x0, y0])
    image = crop.transpose(2, 0, 1).astype(np.float32) + 0.5  # the graph's final cast truncates: this rounds
    arrays = (image, rig.fields, rig.pixels, rig.eye_maps, rig.mouth_maps, rig.geometry)
    info = {
        "photo_size": [rgb.shape[1], rgb.shape[0]],
        "face_box": [round(v, 1) for v in face.box],
        "faces_found": len(faces),
        "crop_size": [y1 - y0, x1 - x0],
        "warnings": warn,
        "rig": rig.info,
    }
    for message in warn:
        log.warning("avatar: %s", message)
    inputs = {name: np.ascontiguousarray(a) for name, a in zip(AVATAR_INPUTS, arrays)}
    return Avatar(avatar_id(data, cfg), frame, box, inputs, info)
