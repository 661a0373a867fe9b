"""Compose the trained motion network and the warp renderer into the one ONNX graph, and check it.

Needs torch (the `train` extra). The graph follows `s2v.contract`: the server only ever sees the
file this writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s2v.avatar import Avatar
from s2v.contract import AVATAR_INPUTS, CONTRACT, CONTROL_CHANNELS, INPUT_NAMES, OUTPUT_NAMES
from s2v.motion.network import MotionNet
from s2v.render.warp import WarpRenderer
from s2v.runtime.model import ASSETS, DEFAULT_MODEL

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINT = ASSETS / "motion.pt"


@dataclass
class ExportConfig:
    checkpoint: Path = field(default=DEFAULT_CHECKPOINT, metadata={"help": "trained motion network (s2v train)"})
    output: Path = field(default=DEFAULT_MODEL, metadata={"help": "ONNX file to write"})


class S2VGraph(nn.Module):
    """audio chunk + state + controls + avatar tensors -> head crops + motion + new state."""

    def __init__(self, motion: MotionNet, renderer: WarpRenderer) -> None:
        super().__init__()
        self.motion = motion
        self.renderer = renderer

    def forward(self, audio: torch.Tensor, state: torch.Tensor, controls: torch.Tensor, *avatar: torch.Tensor):
        motion, new_state = self.motion(audio, state)
        frames = self.renderer(motion, controls, *avatar)
        return frames, motion, new_state


def build_graph(checkpoint: Path) -> S2VGraph:
    graph = S2VGraph(MotionNet.load(checkpoint), WarpRenderer())
    return graph.eval()


def example_inputs(graph: S2VGraph, avatar: Avatar, frames: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Speech-like noise, a non-trivial state and idle controls for `frames` frames."""
    rng = np.random.default_rng(seed)
    audio = (0.1 * rng.standard_normal(frames * CONTRACT.audio.samples_per_frame)).astype(np.float32)
    controls = np.zeros((frames, len(CONTROL_CHANNELS)), np.float32)
    controls[:, :3] = rng.uniform(-0.08, 0.08, (frames, 3))
    controls[:, 3] = rng.uniform(0, 1, frames)
    controls[:, 4:6] = rng.uniform(-0.5, 0.5, (frames, 2))  # gaze
    controls[:, 6:8] = rng.uniform(0, 1, (frames, 2))  # brows
    state = torch.zeros(1, graph.motion.state_size)
    tensors = [torch.from_numpy(audio), state, torch.from_numpy(controls)]
    tensors += [torch.from_numpy(np.ascontiguousarray(avatar.inputs[name])) for name in AVATAR_INPUTS]
    return tuple(tensors)


def _dynamic_axes(avatar: Avatar) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {
        "audio": {0: "samples"},
        "controls": {0: "frames"},
        "frames": {0: "frames", 1: "crop_h", 2: "crop_w"},
        "motion": {0: "frames"},
    }
    for name in AVATAR_INPUTS:  # every avatar dimension may vary: crop size, pixel counts
        axes[name] = {i: f"{name}_{i}" for i in range(avatar.inputs[name].ndim)}
    return axes


def export_graph(config: ExportConfig, avatar: Avatar) -> Path:
    """Trace with the legacy exporter (the dynamo path froze a reshape to the example length)."""
    graph = build_graph(config.checkpoint)
    inputs = example_inputs(graph, avatar, frames=3)
    config.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.output.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(
            graph,
            inputs,
            str(tmp),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=_dynamic_axes(avatar),
            opset_version=CONTRACT.opset,
            dynamo=False,
        )
    tmp.replace(config.output)
    log.info("wrote %s (%.1f MB)", config.output, config.output.stat().st_size / 1e6)
    return config.output


def compare_with_torch(onnx_path: Path, checkpoint: Path, avatar: Avatar, frames: int, seed: int = 1) -> dict[str, float]:
    """Run torch and ONNX Runtime on the same inputs; returns max abs differences per output."""
    from s2v.runtime.model import ExportedModel, ModelConfig

    graph = build_graph(checkpoint)
    inputs = example_inputs(graph, avatar, frames, seed)
    with torch.no_grad():
        expected = [t.numpy() for t in graph(*inputs)]
    model = ExportedModel(ModelConfig(model=onnx_path, device="cpu"))
    feeds = dict(zip(INPUT_NAMES, (t.numpy() for t in inputs)))
    got = model.session.run(None, feeds)
    return {
        name: float(np.abs(e.astype(np.float64) - g.astype(np.float64)).max())
        for name, e, g in zip(OUTPUT_NAMES, expected, got)
    }
