"""Cost of one frame on one CPU core: `python -m s2v.render.bench [--model PATH]`.

Times the whole streaming step the server runs per 40 ms of audio (motion network, render step, paste into the
frame), ONNX Runtime on one thread, for the built-in portrait and the half-body astronaut at 512x512 and 720p,
and the motion network alone (cut out of the same graph). Targets: 4 ms per 512x512 frame, 10 ms per 720p frame,
1 ms for the motion network.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np

from s2v.avatar import Avatar, AvatarConfig, prepare_avatar
from s2v.avatar.store import BUILTIN_PHOTO
from s2v.contract import CONTRACT
from s2v.runtime.generator import StreamingGenerator
from s2v.runtime.model import DEFAULT_MODEL, ExportedModel, ModelConfig

TARGET_MS = {"512": 4.0, "720p": 10.0}
MOTION_TARGET_MS = 1.0


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


def motion_ms(model_path: Path, frames: int = 500) -> tuple[float, float]:
    """Median and 95th percentile ms of the motion network alone (audio, state -> motion, new_state) streaming one
    40 ms frame per call; the subgraph is cut from the shipped graph, so it is the very nodes the server runs."""
    import onnx
    import onnxruntime as ort
    from onnx.utils import Extractor

    motion = Extractor(onnx.load(str(model_path))).extract_model(["audio", "state"], ["motion", "new_state"])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(motion.SerializeToString(), options, providers=["CPUExecutionProvider"])
    state_size = session.get_inputs()[1].shape[1]
    step = CONTRACT.audio.samples_per_frame
    audio = (0.05 * np.random.default_rng(0).standard_normal((frames, step))).astype(np.float32)
    state, times = np.zeros((1, state_size), np.float32), []
    for chunk in audio:
        start = time.perf_counter()
        _, state = session.run(None, {"audio": chunk, "state": state})
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times[20:])), float(np.percentile(times[20:], 95))


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
    median, p95 = motion_ms(args.model)
    verdict = "ok" if median <= MOTION_TARGET_MS else "OVER"
    print(f"{'motion network alone':41s}: {median:5.2f} ms median, {p95:5.2f} ms p95 "
          f"(target {MOTION_TARGET_MS:.0f} ms: {verdict})")


if __name__ == "__main__":
    main()
