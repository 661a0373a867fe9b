"""One photo -> an `Avatar`: the output frame, where the head crop goes, and the rig arrays the graph animates.

The output frame follows the photo: it shows as much of it as fits the output size, centred on the face, zoomed in
only when the face would span less than `min_face_width` of the frame. A face that would span more than
`face_width` is zoomed out only as far as the photo still fills the frame (up to `fill_face_width`); beyond that the
photo ends inside the frame, and the missing border is a mirrored, blurred continuation of the photo (a replicated
edge pixel would streak). `info["fit"]` says which of the three happened. The photo's framing (portrait,
half-body, full-body) is recorded in `info`. Only a square around the head (`head_crop` face widths) is rendered
per frame; the rest of the frame is the still background, so warping cost scales with the head, not the frame.
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
from s2v.avatar.mouth_rest import close_lips
from s2v.avatar.rig import RIG_VERSION, build_rig, mouth_is_open
from s2v.contract import AVATAR_INPUTS

log = logging.getLogger(__name__)

MAX_BYTES = 30 * 1024 * 1024
WORK_MAX_SIDE = 4096  # larger photos are downscaled first: more pixels add nothing at these output sizes
MAX_DECODE_PIXELS = 50_000_000  # refused beyond this once JPEG's reduced-scale decoding is counted (~150 MB RGB)
MIN_FACE_PX = 64
MAX_NOSE_OFFSET = 0.45  # nose tip this far off the face's centre (in face widths) is a profile; ~30 degrees is 0.33

# Named output sizes: (long side, short side). The long side follows the photo's orientation; a square photo
# gives a landscape frame.
SIZES: dict[str, tuple[int, int]] = {"512": (512, 512), "480p": (854, 480), "720p": (1280, 720)}


class AvatarError(ValueError):
    """The photo cannot become an avatar; the message says why, in words a user can act on."""


@dataclass(frozen=True)
class AvatarConfig:
    """How a photo becomes an avatar: the output frame's size and how the face sits in it."""

    width: int = field(default=512, metadata={"help": "output frame width, used as given when --size is empty"})
    height: int = field(default=512, metadata={"help": "output frame height, used as given when --size is empty"})
    size: str = field(default="", metadata={"help": "512, 480p or 720p; orientation follows the photo"})
    face_width: float = field(default=0.30, metadata={"help": "largest face width, fraction of the short side"})
    min_face_width: float = field(default=0.12, metadata={"help": "smallest face width: zoom in on smaller faces"})
    fill_face_width: float = field(default=0.5, metadata={
        "help": "largest face width, fraction of the short side, taken rather than run past a small photo's edge"})
    eye_line: float = field(default=0.40, metadata={"help": "eyes' height from the top where the photo leaves room"})
    # side of the rendered head square, in face widths (1.75 keeps more hair; +10 % time)
    head_crop: float = field(default=1.65, metadata={"help": "side of the animated head square, in face widths"})
    close_mouth: bool = field(default=True, metadata={
        "help": "bring an open-mouthed photo's lips together, so the avatar rests and talks from a closed mouth"})

    def __post_init__(self) -> None:
        if self.size and self.size not in SIZES:
            raise AvatarError(f"unknown size {self.size!r}: use one of {', '.join(SIZES)}")

    def frame_size(self, photo_w: int, photo_h: int) -> tuple[int, int]:
        """(width, height) of the output frame for a photo of this size."""
        if not self.size:
            return self.width, self.height
        long, short = SIZES[self.size]
        return (long, short) if photo_w >= photo_h else (short, long)


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

    def frame(self, crop: np.ndarray) -> np.ndarray:
        """The whole output frame: a rendered head crop pasted into the untouched background."""
        x0, y0, x1, y1 = self.box
        image = self.background.copy()
        image[y0:y1, x0:x1] = crop
        return image


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
            # PIL warns from ~89 MP and refuses from ~179 MP; below that, what counts is what will be decoded
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        im.draft("RGB", (WORK_MAX_SIDE, WORK_MAX_SIDE))  # JPEG decodes straight at a reduced scale
        if im.size[0] * im.size[1] > MAX_DECODE_PIXELS:
            raise AvatarError(
                f"the image is {im.size[0]}x{im.size[1]}: too many pixels to decode safely "
                f"({MAX_DECODE_PIXELS // 10**6} MP max, or a JPEG)"
            )
        im = ImageOps.exif_transpose(im)
        im.load()
    except AvatarError:
        raise
    except Image.DecompressionBombError as e:
        raise AvatarError("the image has too many pixels to decode safely") from e
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


def detect_framing(lm: np.ndarray, photo_w: int, photo_h: int) -> str:
    """'portrait', 'half-body' or 'full-body', from how much of the photo lies below the chin, in face widths.

    Shoulders fall about one face width below the chin and the waist about four; a face that fills much of the
    photo's width is a portrait whatever lies below it.
    """
    fw = float(np.linalg.norm(lm[16] - lm[0]))
    below = (photo_h - float(lm[8, 1])) / fw
    if below < 1.5 or fw / photo_w > 0.28:
        return "portrait"
    return "half-body" if below < 4.5 else "full-body"


def _check_pose(lm: np.ndarray) -> None:
    """Refuse profiles: the warp turns a head a few degrees, it cannot invent the hidden half of a face."""
    axis = lm[16] - lm[0]
    fw = float(np.linalg.norm(axis))
    offset = float(np.dot(lm[30] - (lm[0] + lm[16]) / 2, axis / fw)) / fw
    if abs(offset) > MAX_NOSE_OFFSET:
        raise AvatarError("the face is turned to the side (profile view): use a photo looking roughly at the camera")


def _window(lm: np.ndarray, w: int, h: int, W: int, H: int, cfg: AvatarConfig) -> tuple[float, float, float]:
    """Scale and source top-left (ax, ay) of the output frame: as much of the photo as the frame holds, centred on
    the face and kept inside the photo, with the face's share of the frame held within [min_face_width, face_width].
    """
    fw = float(np.linalg.norm(lm[16] - lm[0]))
    side = min(W, H)
    fill = max(W / w, H / h)  # the smallest scale at which the photo covers the frame
    # zoom in past face_width only where that keeps the frame inside the photo: a bigger face that still leaves a
    # border to continue would only cost render time
    largest = cfg.face_width * side / fw
    if fill <= cfg.fill_face_width * side / fw:
        largest = max(largest, fill)
    scale = float(np.clip(fill, cfg.min_face_width * side / fw, largest))
    cx, eye_y = (lm[0, 0] + lm[16, 0]) / 2, float(lm[36:48, 1].mean())

    def place(want: float, span: float, size: int) -> float:  # beyond the photo only when it is too small
        return float(np.clip(want, 0.0, size - span)) if size >= span else want

    return scale, place(cx - W / 2 / scale, W / scale, w), place(eye_y - cfg.eye_line * H / scale, H / scale, h)


def _frame(
    rgb: np.ndarray, lm: np.ndarray, W: int, H: int, cfg: AvatarConfig
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Scale and place the photo into the W x H output frame; returns the frame, landmarks in it, and warnings.

    The source region is cut before resizing (a small face in a big photo would otherwise be upscaled whole),
    and the placement offset is whole pixels so the photo is resampled once.
    """
    h, w = rgb.shape[:2]
    scale, ax, ay = _window(lm, w, h, W, H, cfg)
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
    ox, oy = int(round((ax - sx0) * k[0])), int(round((ay - sy0) * k[1]))
    pad = (max(-oy, 0), max(oy + H - img.shape[0], 0), max(-ox, 0), max(ox + W - img.shape[1], 0))
    warn = []
    if max(pad) > 0.03 * min(W, H):  # a few mirrored pixels are invisible; more is worth saying
        sides = [s for s, p in zip(("top", "bottom", "left", "right"), pad) if p]
        warn.append(f"photo ends inside the frame ({', '.join(sides)}): border extended")
    valid = cv2.copyMakeBorder(np.ones(img.shape[:2], np.uint8), *pad, cv2.BORDER_CONSTANT, value=0)
    # mirrored, the photo continues its own textures and shading; a replicated edge pixel would streak
    img = cv2.copyMakeBorder(img, *pad, cv2.BORDER_REFLECT_101 if _reflectable(img, pad) else cv2.BORDER_REPLICATE)
    oy, ox = oy + pad[0], ox + pad[2]
    frame = img[oy : oy + H, ox : ox + W]
    if any(pad):  # ...and blurred more the further from the photo, so the mirror never shows a second face
        outside = 1 - valid[oy : oy + H, ox : ox + W]
        dist = cv2.distanceTransform(outside, cv2.DIST_L2, 5)
        blend = np.clip(dist / (0.03 * min(W, H)), 0, 1)[..., None]
        blurred = cv2.GaussianBlur(frame, (0, 0), 0.08 * min(W, H))
        frame = (frame * (1 - blend) + blurred * blend + 0.5).astype(np.uint8)
    return np.ascontiguousarray(frame), (lm_s - [ox - pad[2], oy - pad[0]]).astype(np.float32), warn


def _reflectable(img: np.ndarray, pad: tuple[int, int, int, int]) -> bool:
    """A mirror needs the photo to be at least as deep as the border it fills."""
    return max(pad[0], pad[1]) < img.shape[0] and max(pad[2], pad[3]) < img.shape[1]


def _head_box(lm: np.ndarray, W: int, H: int, cfg: AvatarConfig) -> tuple[int, int, int, int]:
    """Square around the head, a multiple of 8 px, eyes at 45 % from its top, shifted (not shrunk) into the frame."""
    fw = float(np.linalg.norm(lm[16] - lm[0]))
    side = min(int(round(cfg.head_crop * fw / 8)) * 8, min(W, H) // 8 * 8)
    cx, eye_y = (lm[0, 0] + lm[16, 0]) / 2, float(lm[36:48, 1].mean())
    x0 = int(np.clip(round(cx - side / 2), 0, W - side))
    y0 = int(np.clip(round(eye_y - 0.45 * side), 0, H - side))
    return x0, y0, x0 + side, y0 + side


def prepare_avatar(data: bytes, config: AvatarConfig | None = None) -> Avatar:
    """Photo bytes -> Avatar. Raises AvatarError for what is not an image, has no face, a face under 64 px or a
    profile; several faces give the largest, with a warning in `info`."""
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
    _check_pose(face.points)
    framing = detect_framing(face.points, rgb.shape[1], rgb.shape[0])
    W, H = cfg.frame_size(rgb.shape[1], rgb.shape[0])
    frame, lm, frame_warn = _frame(rgb, face.points, W, H, cfg)
    warn += frame_warn
    fit = "extended beyond the photo" if frame_warn else "inside the photo"
    if not frame_warn and float(np.linalg.norm(lm[16] - lm[0])) > cfg.face_width * min(W, H) * 1.01:
        fit = "zoomed in to stay inside the photo"
    box = _head_box(lm, W, H, cfg)
    x0, y0, x1, y1 = box
    crop, lm_crop = frame[y0:y1, x0:x1], lm - [x0, y0]
    mouth, teeth, open_photo = "as in the photo", None, None
    if cfg.close_mouth and mouth_is_open(crop, lm_crop):
        open_photo = crop.copy()
        crop, lm_crop, teeth = close_lips(crop, lm_crop)
        frame[y0:y1, x0:x1] = crop
        mouth = "closed from the photo's open mouth"
    rig = build_rig(crop, lm_crop, teeth, open_photo)
    image = crop.transpose(2, 0, 1).astype(np.float32) + 0.5  # the graph's final cast truncates: this rounds
    arrays = (image, rig.fields, rig.pixels, rig.eye_maps, rig.mouth_maps, rig.geometry)
    info = {
        "photo_size": [rgb.shape[1], rgb.shape[0]],
        "face_box": [round(v, 1) for v in face.box],
        "faces_found": len(faces),
        "framing": framing,
        "fit": fit,
        "mouth_at_rest": mouth,
        "frame_size": [W, H],
        "crop_size": [y1 - y0, x1 - x0],
        "warnings": warn,
        "rig": rig.info,
    }
    for message in warn:
        log.warning("avatar: %s", message)
    inputs = {name: np.ascontiguousarray(a) for name, a in zip(AVATAR_INPUTS, arrays)}
    return Avatar(avatar_id(data, cfg), frame, box, inputs, info)
