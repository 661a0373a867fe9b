"""The render step of the exported graph on its own: chosen motion and controls in, frames out.

The graph computes motion from audio, but review sheets and geometry checks need to draw chosen mouth shapes,
blinks and head turns. So the renderer's nodes are cut out of that very file (the same nodes the server runs,
not a re-export) with `onnx.utils.Extractor`, feeding the graph's `motion` tensor as an input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from s2v.avatar import Avatar
from s2v.contract import AVATAR_INPUTS, CONTROL_CHANNELS, MOTION_CHANNELS
from s2v.runtime.model import DEFAULT_MODEL


class GraphRenderer:
    """motion [n, len(MOTION_CHANNELS)] + controls [n, len(CONTROL_CHANNELS)] -> frames, through the exported graph."""

    def __init__(self, model_path: Path = DEFAULT_MODEL, threads: int = 1) -> None:
        try:
            import onnx
            from onnx.utils import Extractor
        except ImportError as e:  # only review needs it; serving never does
            raise RuntimeError("rendering chosen motion needs the onnx package: pip install onnx") from e
        graph = onnx.load(str(model_path))
        renderer = Extractor(graph).extract_model(["motion", "controls", *AVATAR_INPUTS], ["frames"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(renderer.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def crops(self, avatar: Avatar, motion: np.ndarray, controls: np.ndarray) -> np.ndarray:
        """Head crops uint8 [n, h, w, 3], as the graph's `frames` output."""
        motion = np.asarray(motion, np.float32).reshape(-1, len(MOTION_CHANNELS))
        controls = np.asarray(controls, np.float32).reshape(-1, len(CONTROL_CHANNELS))
        feeds = {"motion": motion, "controls": controls, **avatar.inputs}
        return self.session.run(None, feeds)[0]

    def frames(self, avatar: Avatar, motion: np.ndarray, controls: np.ndarray) -> np.ndarray:
        """Whole output frames uint8 [n, H, W, 3]: the crops pasted into the background, as the generator does."""
        return np.stack([avatar.frame(crop) for crop in self.crops(avatar, motion, controls)])


def pose(**values: float) -> tuple[np.ndarray, np.ndarray]:
    """One frame's (motion, controls) rows from channel names, e.g. pose(jaw_open=1, blink=0.5)."""
    motion = np.zeros(len(MOTION_CHANNELS), np.float32)
    controls = np.zeros(len(CONTROL_CHANNELS), np.float32)
    for name, value in values.items():
        if name in MOTION_CHANNELS:
            motion[MOTION_CHANNELS.index(name)] = value
        elif name in CONTROL_CHANNELS:
            controls[CONTROL_CHANNELS.index(name)] = value
        else:
            raise KeyError(f"{name} is neither a motion nor a control channel")
    return motion, controls
