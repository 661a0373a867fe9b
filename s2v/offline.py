"""Offline rendering: the same streaming generator, fed a whole file as fast as it goes, into an MP4."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from s2v.audio.files import read_audio
from s2v.avatar import Avatar
from s2v.control.idle import IdleConfig
from s2v.runtime.generator import AvatarFrame, StreamingGenerator
from s2v.runtime.model import ExportedModel

log = logging.getLogger(__name__)

AUDIO_RATE = 48000  # the MP4 keeps the source audio at full quality, not the model's 16 kHz


@dataclass
class RenderConfig:
    image: Path | None = field(default=None, metadata={"help": "photo of the person (default: built-in avatar)"})
    audio: Path | None = field(default=None, metadata={"help": "speech to lip-sync (any format ffmpeg reads)"})
    output: Path = field(default=Path("out.mp4"), metadata={"help": "MP4 to write (H.264 + AAC)", "short": ("-o",)})
    prompt: str = field(default="", metadata={"help": "free text steering head motion, e.g. 'calm, nodding'"})
    batch: int = field(default=8, metadata={"help": "frames per ONNX Runtime call"})
    seed: int = field(default=0, metadata={"help": "seed of the idle motion (blinks, sway)"})
    contact_sheet: Path | None = field(
        default=None, metadata={"help": "also write a PNG grid of mouth shapes, a blink and head turns (needs onnx)"}
    )
    phones: Path | None = field(default=None, metadata={
        "help": "phone alignment of --audio (see `s2v eval --help`), for --phone-sheet"})
    phone_sheet: Path | None = field(default=None, metadata={
        "help": "also write a PNG grid of the rendered head in the middle of each p/b/m, f/v, uw/ow/w/uh and "
                "aa/ae/ao of --phones: does a real recording close and round the lips?"})


def render_file(model: ExportedModel, avatar: Avatar, audio_path: Path, output: Path, *, prompt: str = "",
                batch: int = 8, seed: int = 0, crf: int = 20,
                on_frame: Callable[[AvatarFrame], None] | None = None) -> dict[str, float]:
    """Render `audio_path` spoken by `avatar` into `output` (H.264 at quality `crf`), showing each frame to
    `on_frame` too; returns timing numbers."""
    pcm16 = read_audio(audio_path, model.contract.audio.sample_rate)
    pcm_out = read_audio(audio_path, AUDIO_RATE)
    generator = StreamingGenerator(model, avatar, idle=IdleConfig(seed=seed), max_batch=batch)
    if prompt:
        generator.set_prompt(prompt)
    fps = generator.fps
    started = time.perf_counter()
    frames = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(output), "w") as container:
        height, width = avatar.background.shape[:2]
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": str(crf), "preset": "veryfast"}
        audio = container.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        generator.push_audio(pcm16)
        for frame in _all_frames(generator):
            picture = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
            picture.pts = frame.index
            picture.time_base = Fraction(1, fps)
            container.mux(video.encode(picture))
            frames += 1
            if on_frame is not None:
                on_frame(frame)
        container.mux(video.encode(None))
        _mux_audio(container, audio, pcm_out[: round(frames * AUDIO_RATE / fps)])
    elapsed = time.perf_counter() - started
    seconds = frames / fps
    log.info("rendered %d frames (%.1f s of video) in %.1f s: %.1fx real time", frames, seconds, elapsed,
             seconds / max(elapsed, 1e-9))
    return {"frames": frames, "video_s": seconds, "wall_s": elapsed, "realtime_factor": seconds / max(elapsed, 1e-9)}


def _all_frames(generator: StreamingGenerator):
    yield from generator.frames()
    yield from generator.flush()


def _mux_audio(container: av.container.OutputContainer, stream: av.AudioStream, pcm: np.ndarray) -> None:
    block = 1024
    for start in range(0, len(pcm), block):
        chunk = pcm[start : start + block]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = start
        frame.time_base = Fraction(1, AUDIO_RATE)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
