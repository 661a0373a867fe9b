"""A PNG of a clip's predicted motion (colour) against the targets of its phones (grey), for `s2v eval --plot`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from s2v.contract import CONTRACT, MOTION_CHANNELS
from s2v.motion.network import MotionNet
from s2v.motion.visemes import SILENCE_PHONES, motion_targets
from s2v.training.clips import Clip
from s2v.training.evaluate import FPS, SPF, padded, predict

log = logging.getLogger(__name__)


def write_plot(checkpoint: Path | str | MotionNet, path: Path | str, clip: Clip, seconds: float = 6.0) -> Path | None:
    """Draw predicted (colour) vs reference (grey) curves of a clip's first `seconds` to a PNG, with phone labels."""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        log.warning("pillow is not installed: no plot written")
        return None
    net = checkpoint if isinstance(checkpoint, MotionNet) else MotionNet.load(checkpoint)
    audio, phones = padded(clip)
    audio = audio[: int(seconds * FPS) * SPF] if len(audio) > seconds * CONTRACT.audio.sample_rate else audio
    pred = predict(net.eval(), audio)
    ref = motion_targets(phones, len(pred))
    w, row, left = 1400, 110, 130
    img = Image.new("RGB", (w, 30 + row * len(MOTION_CHANNELS)), "white")
    draw = ImageDraw.Draw(img)
    xs = left + (np.arange(len(pred)) + 0.5) * (w - left - 10) / len(pred)
    px_per_s = (w - left - 10) * FPS / len(pred)
    draw.text((left, 5), f"{clip.voice}: {clip.text}"[:170], fill="black")
    colours = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for c, name in enumerate(MOTION_CHANNELS):
        top = 30 + c * row
        lo, hi = (-1.0, 1.0) if name == "lip_spread" else (0.0, 1.0)

        def y(v: np.ndarray, top: int = top, lo: float = lo, hi: float = hi) -> np.ndarray:
            return top + row - 8 - (np.clip(v, lo, hi) - lo) / (hi - lo) * (row - 16)

        draw.rectangle([left, top + 4, w - 10, top + row - 4], outline="#cccccc")
        draw.text((5, top + row // 2 - 6), name, fill="black")
        for p in phones:
            x0 = left + p.start * px_per_s
            if x0 < w - 10 and p.name not in SILENCE_PHONES:
                draw.line([(x0, top + 4), (x0, top + row - 4)], fill="#eeeeee")
                if c == 0:
                    draw.text((x0 + 1, top + 5), p.name, fill="#888888")
        draw.line(list(zip(xs, y(ref[:, c]))), fill="#999999", width=2)
        draw.line(list(zip(xs, y(pred[:, c]))), fill=colours[c], width=2)
    path = Path(path)
    img.save(path)
    log.info("wrote %s", path)
    return path
