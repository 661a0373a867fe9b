"""Contact sheets: labelled grids of rendered frames for a person to look at.

`contact_sheet` shows the poses that matter in review, drawn by the exported graph: the first cell is the
whole output frame with the animated head square outlined (outside it every frame equals the photo); the
others zoom on the head, where the motion is: mouth shapes of speech, a blink, a glance either way, raised
brows, the head turned both ways and nodding. `phone_sheet` shows what a recording made of the mouth: the frame
in the middle of each lip-visible phone of its alignment, so a reviewer sees whether a real voice's /p b m/ close
and its /uw/ rounds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from s2v.avatar import Avatar
from s2v.contract import MOTION_CHANNELS
from s2v.motion.alignment import read_phones
from s2v.motion.visemes import Phone
from s2v.offline import render_file
from s2v.render.graph import GraphRenderer, pose
from s2v.runtime.generator import AvatarFrame
from s2v.runtime.model import ExportedModel

# (label, channel values): what a reviewer checks, in reading order
SHEET_POSES: tuple[tuple[str, dict[str, float]], ...] = (
    ("rest", {}),
    ("/aa/ open", {"jaw_open": 0.9, "speech": 1.0}),
    ("/uw/ round", {"jaw_open": 0.3, "lip_spread": -1.0, "speech": 1.0}),
    ("/m/ closed", {"lip_closure": 1.0, "speech": 1.0}),
    ("/f/ lip tuck", {"jaw_open": 0.15, "lip_tuck": 1.0, "speech": 1.0}),
    ("/iy/ spread", {"jaw_open": 0.25, "lip_spread": 1.0, "speech": 1.0}),
    ("blink", {"blink": 1.0}),
    ("gaze left", {"gaze_x": -0.6}),
    ("gaze right", {"gaze_x": 0.6}),
    ("brows up", {"brow_raise": 1.0}),
    ("yaw +0.12", {"head_yaw": 0.12, "jaw_open": 0.3, "speech": 1.0}),
    ("yaw -0.12", {"head_yaw": -0.12, "jaw_open": 0.3, "speech": 1.0}),
    ("nod +0.08", {"head_pitch": 0.08}),
    ("nod -0.08", {"head_pitch": -0.08}),
)

# Lip-visible phones a phone sheet shows, with the motion channel that says what the mouth should do.
SHEET_PHONES: dict[str, str] = {
    **dict.fromkeys(("p", "b", "m"), "lip_closure"),
    **dict.fromkeys(("f", "v"), "lip_tuck"),
    **dict.fromkeys(("uw", "ow", "w", "uh"), "lip_spread"),
    **dict.fromkeys(("aa", "ae", "ao"), "jaw_open"),
}

CELL = 256
LABEL_H = 22
COLUMNS = 4


def _zoom(avatar: Avatar) -> tuple[int, int, int, int]:
    """The head square grown by a quarter, kept inside the frame: the region the head cells show."""
    x0, y0, x1, y1 = avatar.box
    height, width = avatar.background.shape[:2]
    side = min(round(1.25 * (x1 - x0)), width, height)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    zx = int(np.clip(cx - side // 2, 0, width - side))
    zy = int(np.clip(cy - side // 2, 0, height - side))
    return zx, zy, zx + side, zy + side


def _cell(image: np.ndarray, label: str, font: ImageFont.ImageFont) -> Image.Image:
    picture = Image.fromarray(image)
    k = CELL / max(picture.size)
    picture = picture.resize((round(picture.width * k), round(picture.height * k)), Image.Resampling.LANCZOS)
    cell = Image.new("RGB", (CELL, CELL + LABEL_H), (24, 24, 24))
    cell.paste(picture, ((CELL - picture.width) // 2, LABEL_H + (CELL - picture.height) // 2))
    ImageDraw.Draw(cell).text((6, 3), label, fill=(255, 255, 255), font=font)
    return cell


def contact_sheet(renderer: GraphRenderer, avatar: Avatar, path: Path, title: str = "") -> Path:
    """Render SHEET_POSES for `avatar` through the graph and write the labelled grid to `path` (PNG)."""
    motion, controls = (np.stack(rows) for rows in zip(*(pose(**values) for _, values in SHEET_POSES)))
    frames = renderer.frames(avatar, motion, controls)
    font = ImageFont.load_default(size=15)
    height, width = avatar.background.shape[:2]
    overview = frames[0].copy()
    x0, y0, x1, y1 = avatar.box
    overview = np.asarray(_outline(Image.fromarray(overview), (x0, y0, x1 - 1, y1 - 1), max(width, height)))
    framing = avatar.info.get("framing", "")
    cells = [_cell(overview, title or f"{width}x{height} {framing}".strip(), font)]
    zx0, zy0, zx1, zy1 = _zoom(avatar)
    cells += [_cell(f[zy0:zy1, zx0:zx1], label, font) for f, (label, _) in zip(frames, SHEET_POSES)]
    return _grid(cells, path)


def phone_frames(phones: list[Phone], fps: int, limit: int = 19) -> dict[int, Phone]:
    """Frame index -> phone, for the frame in the middle of each SHEET_PHONES phone (at most `limit`, in
    time order; frame i shows [i / fps, (i + 1) / fps))."""
    picked: dict[int, Phone] = {}
    for p in phones:
        if p.name in SHEET_PHONES and len(picked) < limit:
            picked.setdefault(int((p.start + p.end) / 2 * fps), p)
    return picked


def phone_sheet(frames: dict[int, AvatarFrame], phones: dict[int, Phone], avatar: Avatar, path: Path,
                title: str = "") -> Path:
    """Grid of the photo's head, then the head in the rendered `frames` picked by `phone_frames`, each labelled
    with its phone, start time and the value of the motion channel that phone is about."""
    font = ImageFont.load_default(size=15)
    zx0, zy0, zx1, zy1 = _zoom(avatar)
    cells = [_cell(avatar.background[zy0:zy1, zx0:zx1], title or "photo", font)]
    for index, phone in sorted(phones.items()):
        if index in frames:
            channel = SHEET_PHONES[phone.name]
            value = frames[index].motion[MOTION_CHANNELS.index(channel)]
            label = f"/{phone.name}/ {phone.start:.2f}s {channel.split('_')[-1]} {value:+.2f}"
            if channel != "lip_closure":  # a false closure is what hides an open or rounded mouth
                label += f" shut {frames[index].motion[MOTION_CHANNELS.index('lip_closure')]:.2f}"
            cells.append(_cell(frames[index].image[zy0:zy1, zx0:zx1], label, font))
    return _grid(cells, path)


def render_phone_sheet(model: ExportedModel, avatar: Avatar, audio: Path, phones: Path, video: Path, sheet: Path,
                       title: str = "", **render_options) -> dict[str, float]:
    """`render_file` of `audio` into `video`, keeping the frames `phone_frames` picks from the alignment `phones`
    for a `phone_sheet` written to `sheet`; returns render_file's numbers."""
    picked = phone_frames(read_phones(phones), model.contract.audio.fps)
    kept: dict[int, AvatarFrame] = {}

    def keep(frame: AvatarFrame) -> None:
        if frame.index in picked:
            kept[frame.index] = frame

    stats = render_file(model, avatar, audio, video, on_frame=keep, **render_options)
    phone_sheet(kept, picked, avatar, sheet, title)
    return stats


def _grid(cells: list[Image.Image], path: Path) -> Path:
    rows = -(-len(cells) // COLUMNS)
    gap = 4
    sheet = Image.new("RGB", (COLUMNS * (CELL + gap) - gap, rows * (CELL + LABEL_H + gap) - gap), (255, 255, 255))
    for i, cell in enumerate(cells):
        sheet.paste(cell, ((i % COLUMNS) * (CELL + gap), (i // COLUMNS) * (CELL + LABEL_H + gap)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _outline(picture: Image.Image, box: tuple[int, int, int, int], longest: int) -> Image.Image:
    """The animated square, drawn thick enough to survive the thumbnail."""
    ImageDraw.Draw(picture).rectangle(box, outline=(255, 210, 0), width=max(2, longest // 200))
    return picture
