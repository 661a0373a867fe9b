"""The one streaming generator API: push 16 kHz PCM, iterate over frames with the audio they show.

The server, the offline renderer, the benchmarks and the tests all drive the model through this
class. It knows nothing of transports: whoever feeds it decides the pacing. Each `AvatarFrame`
carries the exact audio it was made from, so sound and picture stay in sync by construction.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from s2v.avatar import Avatar
from s2v.control.idle import IdleConfig, MotionController, MotionStyle
from s2v.runtime.model import ExportedModel


@dataclass
class AvatarFrame:
    index: int  # frame number since the stream started, at the model's fps
    image: np.ndarray  # H x W x 3 uint8 RGB, the whole output frame
    audio: np.ndarray  # float32 16 kHz mono, exactly the samples this frame shows
    motion: np.ndarray  # float32 [len(MOTION_CHANNELS)] the mouth motion drawn


def voice_level(audio: np.ndarray, step: int) -> np.ndarray:
    """Per-frame loudness in [0, 1] (-50 dBFS .. -20 dBFS): livens head motion while someone speaks.

    Taken from the audio itself, before the graph runs, so batching never changes the result.
    """
    rms = np.sqrt(np.mean(audio.reshape(-1, step) ** 2, axis=1) + 1e-12)
    return np.clip((20 * np.log10(rms) + 50) / 30, 0.0, 1.0)


def as_float_pcm(pcm: np.ndarray) -> np.ndarray:
    """16 kHz mono as float32 in [-1, 1], from int16 or float input."""
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise ValueError(f"expected mono 1-D PCM, got shape {pcm.shape}")
    if pcm.dtype == np.int16:
        return pcm.astype(np.float32) / 32768.0
    return np.clip(pcm.astype(np.float32, copy=False), -1.0, 1.0)


class StreamingGenerator:
    """Incremental audio -> video for one stream of one avatar.

    `push_audio` may be called from any thread while another thread iterates `frames()`.
    A frame is produced once its own audio and `lookahead_frames` frames after it are in.
    """

    def __init__(
        self,
        model: ExportedModel,
        avatar: Avatar,
        *,
        idle: IdleConfig | None = None,
        max_batch: int = 1,
    ) -> None:
        self.model = model
        self.avatar = avatar
        self.controller = MotionController(idle)
        self.max_batch = max_batch
        spec = model.contract.audio
        self._step = spec.samples_per_frame
        self._lookahead = model.contract.lookahead_frames
        self._lock = threading.Lock()
        self._pending = np.zeros(0, np.float32)  # audio not yet given to the graph
        self._state = model.initial_state()
        self._held: deque[np.ndarray] = deque()  # audio of frames the graph has seen but not yet drawn
        self._steps = 0  # frames of audio given to the graph
        self._taken = 0  # frames of audio taken for the graph, including a call still running
        self._controls: np.ndarray | None = None  # the latest frame's head, eye and brow controls
        self.graph_cpu_s = 0.0  # CPU time of the calling threads inside the graph, for the server's accounts

    @property
    def fps(self) -> int:
        return self.model.contract.audio.fps

    @property
    def latency_s(self) -> float:
        """Algorithmic latency: a frame waits for its own audio plus the look-ahead."""
        return (1 + self._lookahead) / self.fps

    def push_audio(self, pcm: np.ndarray) -> None:
        samples = as_float_pcm(pcm)
        with self._lock:
            self._pending = np.concatenate([self._pending, samples])

    def pending_samples(self) -> int:
        with self._lock:
            return len(self._pending)

    def set_prompt(self, prompt: str) -> MotionStyle:
        return self.controller.set_prompt(prompt)

    def interrupt(self) -> int:
        """Stop speaking now: drop queued audio and return the mouth to rest on the next frame.

        The frames already seen by the graph are kept on the timeline but now carry silence, and
        the state is zeroed (the graph's "silence before"), so the very next frame is at rest.
        Returns the index of that frame (frames of a graph call already running come before it).
        """
        with self._lock:
            self._pending = np.zeros(0, np.float32)
            self._state = self.model.initial_state()
            for i in range(len(self._held)):
                self._held[i] = np.zeros(self._step, np.float32)
            return max(0, self._taken - self._lookahead)

    def rest_image(self) -> np.ndarray:
        """The whole picture with the mouth at rest and the latest head pose, off the timeline: after an
        interrupt, a frame drawn before it but not yet shown is replaced by this."""
        controls = self._controls if self._controls is not None else self.controller.next(np.zeros(1))
        crops, _, _ = self.model.run(np.zeros(self._step, np.float32), self.model.initial_state(), controls,
                                     self.avatar.inputs)
        return self.avatar.frame(crops[0])

    def frames(self) -> Iterator[AvatarFrame]:
        """Generate every frame whose audio (and look-ahead) is in; returns when none is left."""
        while True:
            with self._lock:
                n = min(len(self._pending) // self._step, self.max_batch)
                if n == 0:
                    return
                audio = self._pending[: n * self._step]
                self._pending = self._pending[n * self._step :]
                self._taken += n
                state = self._state
            yield from self._advance(audio, state)

    def flush(self) -> Iterator[AvatarFrame]:
        """End of stream: pad with silence so every pushed sample gets drawn."""
        with self._lock:
            partial = len(self._pending) % self._step
            pad = (self._step - partial) % self._step + self._lookahead * self._step
            self._pending = np.concatenate([self._pending, np.zeros(pad, np.float32)])
        yield from self.frames()

    def _advance(self, audio: np.ndarray, state: np.ndarray) -> Iterator[AvatarFrame]:
        n = len(audio) // self._step
        controls = self.controller.next(voice_level(audio, self._step))
        self._controls = controls[-1:]
        cpu = time.thread_time()
        crops, motion, new_state = self.model.run(audio, state, controls, self.avatar.inputs)
        self.graph_cpu_s += time.thread_time() - cpu
        ready: list[tuple[int, np.ndarray, int]] = []  # (frame index, its audio, row)
        with self._lock:
            interrupted = self._state is not state  # an interrupt in between wins over this result
            if not interrupted:
                self._state = new_state
            for i in range(n):
                chunk = audio[i * self._step : (i + 1) * self._step]
                self._held.append(np.zeros_like(chunk) if interrupted else chunk.copy())
                index = self._steps - self._lookahead
                self._steps += 1
                # Rows before the stream began are the graph still filling its look-ahead.
                if index >= 0:
                    ready.append((index, self._held.popleft(), i))
        for index, frame_audio, i in ready:
            yield AvatarFrame(index=index, image=self.avatar.frame(crops[i]), audio=frame_audio, motion=motion[i])
