"""Cost of one frame on one CPU core: `python -m s2v.render.bench [--model PATH]`.

Times the whole streaming step the server runs per 40 ms of audio (motion network, render step, paste into the
frame), ONNX Runtime on one thread, for the built-in portrait and the half-body astronaut at 512x512 and 720p.
Targets: 4 ms per 512x512 frame, 10 ms per 720p frame.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np

from s2v.avatar import Avatar, AvatarConfig, prepare_avatar
from s2v.avatar.store import BUILTIN_PHOTO
from s2v.runtime.generator import StreamingGenerator
from s2v.runtime.model import DEFAULT_MODEL, ExportedModel, ModelConfig

TARGET_MS = {"512": 4.0, "720p": 10.0}


def _astronaut() -> bytes:
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "PNG")
    return buf.getvalue()


def step_ms(model: ExportedModel, avatar: Avatar, frames: int = 150) -> tuple[float, float]:
    """Median and 95th percentile wall ms of one streamed 40 ms frame, as the live server runs it."""
    generator = StreamingGenerator(model, avatar)
    step = model.contract.audio.samples_per_frame
    audio = (0.05 * np.random.default_rng(0).standard_normal(step * frames)).astype(np.float32)
    times = []
    for i in range(frames):
        generator.push_audio(audio[i * step : (i + 1) * step])
        start = time.perf_counter()
        for _frame in generator.frames():
            pass
        times.append(1000 * (time.perf_counter() - start))
    times = times[10:]  # warm-up and the look-ahead's empty calls
    return float(np.median(times)), float(np.percentile(times, 95))


def frame_ms(model: ExportedModel, photo: bytes, size: str, frames: int = 150) -> tuple[float, float, tuple]:
    """step_ms for a photo prepared at `size`, and the (frame, head crop) sizes it was measured at."""
    avatar = prepare_avatar(photo, AvatarConfig(size=size))
    median, p95 = step_ms(model, avatar, frames)
    height, width = avatar.background.shape[:2]
    return median, p95, (f"{width}x{height}", avatar.crop_size[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    model = ExportedModel(ModelConfig(model=args.model, device="cpu", threads=1))
    for name, photo in (("built-in portrait", BUILTIN_PHOTO.read_bytes()), ("astronaut half-body", _astronaut())):
        for size, target in TARGET_MS.items():
            median, p95, (frame, crop) = frame_ms(model, photo, size)
            verdict = "ok" if median <= target else "OVER"
            print(f"{name:20s} {frame:>9s} head {crop:3d}px: {median:5.2f} ms median, {p95:5.2f} ms p95 "
                  f"(target {target:.0f} ms: {verdict})")


if __name__ == "__main__":
    main()
