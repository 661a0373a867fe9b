"""The exported ONNX graph loaded into ONNX Runtime, with a provider chosen for this machine."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from s2v.contract import CONTROL_CHANNELS, CONTRACT, INPUT_NAMES, OUTPUT_NAMES

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS / "s2v.onnx"


@dataclass
class ModelConfig:
    """How to run the graph: which file, which device, how many threads per session."""

    model: Path = field(default=DEFAULT_MODEL, metadata={"help": "exported ONNX model (s2v export)"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA only when a GPU is really there), cpu or cuda"})
    threads: int = field(default=1, metadata={"help": "ONNX Runtime threads per call; one per live session "
                                                      "keeps sessions apart"})


def _gpu_present() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


def choose_providers(device: str) -> list[str]:
    """CUDA only when ONNX Runtime has it *and* a GPU is present; asking blindly floods the log."""
    available = ort.get_available_providers()
    cuda_ok = "CUDAExecutionProvider" in available and _gpu_present()
    if device == "cuda" and not cuda_ok:
        raise RuntimeError(f"--device cuda asked for, but no usable GPU (providers: {available})")
    if device in ("cuda", "auto") and cuda_ok:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class ExportedModel:
    """One ONNX Runtime session, shared by every stream (InferenceSession.run is thread-safe)."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        self.config = config or ModelConfig()
        path = Path(self.config.model)
        if not path.exists():
            raise FileNotFoundError(f"model file {path} not found; build it with `s2v train` then `s2v export`")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=choose_providers(self.config.device))
        self.provider = self.session.get_providers()[0]
        names = [i.name for i in self.session.get_inputs()]
        if tuple(names) != INPUT_NAMES or tuple(o.name for o in self.session.get_outputs()) != OUTPUT_NAMES:
            raise ValueError(f"{path} does not follow the model contract: inputs {names}")
        self.state_size = int(self.session.get_inputs()[1].shape[1])
        self.contract = CONTRACT
        log.info("loaded %s on %s (state %d floats)", path.name, self.provider, self.state_size)

    def initial_state(self) -> np.ndarray:
        return np.zeros((1, self.state_size), np.float32)

    def run(
        self, audio: np.ndarray, state: np.ndarray, controls: np.ndarray, avatar_inputs: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance by len(audio) / samples_per_frame frames; returns (frames, motion, new_state)."""
        n = len(audio) // self.contract.audio.samples_per_frame
        if controls.shape != (n, len(CONTROL_CHANNELS)):
            raise ValueError(f"controls must be [{n}, {len(CONTROL_CHANNELS)}] for {len(audio)} samples, "
                             f"not {list(controls.shape)}")
        feeds = {"audio": audio, "state": state, "controls": controls, **avatar_inputs}
        frames, motion, new_state = self.session.run(None, feeds)
        return frames, motion, new_state
