"""A pipecat processor that turns the TTS's speech into the avatar's video, in-process (the pipecat extra).

Place it after the TTS and before `transport.output()` (with `video_out_enabled=True`). It takes the TTS's
audio frames as fast as they come, plays them out in real time through the same segment playout and
streaming generator as the server's `/agent` socket, and pushes, every 40 ms, the avatar's picture followed
by the audio it was made from (the picture marked `sync_with_audio`, so the transport shows it as that audio
starts). A TTS response ends its segment on `TTSStoppedFrame`; an `InterruptionFrame` drops the queued speech
and the next picture shows the mouth at rest. Between responses the avatar idles.

    avatar = AvatarVideoService(photo=Path("me.jpg"))
    pipeline = Pipeline([transport.input(), stt, llm, tts, avatar, transport.output()])

Events: `on_playback_started(service, segment)` and `on_playback_finished(service, segment, position_s,
interrupted)`, as on the server's socket.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from s2v.avatar import Avatar, AvatarConfig, AvatarStore
from s2v.runtime.generator import AvatarFrame, StreamingGenerator
from s2v.runtime.model import ExportedModel, ModelConfig
from s2v.runtime.playout import PcmFormat, PlaybackEvent, PlayoutError, SegmentPlayout, Shown

MAX_BEHIND_TICKS = 3  # further behind the clock than this, ticks are skipped rather than rendered in a burst


class AvatarVideoService(FrameProcessor):
    """TTS audio in; the avatar's pictures and the audio they show out, at the model's frame rate."""

    def __init__(self, *, photo: Path | None = None, avatar: Avatar | None = None, model: ExportedModel | None = None,
                 size: tuple[int, int] = (512, 512), prompt: str | None = None, buffer_s: float = 120.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self._model = model or ExportedModel(ModelConfig())
        if avatar is None:
            store = AvatarStore(AvatarStore.default_root(), AvatarConfig(width=size[0], height=size[1]))
            avatar = store.put(photo.read_bytes()) if photo is not None else store.builtin()
        self.avatar = avatar
        self.generator = StreamingGenerator(self._model, avatar)
        if prompt:
            self.generator.set_prompt(prompt)
        spec = self._model.contract.audio
        self.playout = SegmentPlayout(spec.sample_rate, spec.samples_per_frame, buffer_s)
        self._rate = spec.sample_rate
        self._fps = spec.fps
        self._open: PcmFormat | None = None
        self._ticker: asyncio.Task | None = None
        self._register_event_handler("on_playback_started")
        self._register_event_handler("on_playback_finished")

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self._take(frame)  # played out by the ticker, with its pictures: not passed on as it came
            return
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self._ticker = self.create_task(self._tick())
            return
        if isinstance(frame, InterruptionFrame):
            self._open = None
            self.generator.interrupt()
            for event in self.playout.clear():
                await self._report(event)
        elif isinstance(frame, TTSStoppedFrame) and self._open is not None:
            self._open = None
            self.playout.end()
        elif isinstance(frame, (EndFrame, CancelFrame)) and self._ticker is not None:
            await self.cancel_task(self._ticker)
            self._ticker = None
        await self.push_frame(frame, direction)

    def _take(self, frame: TTSAudioRawFrame) -> None:
        fmt = PcmFormat(frame.sample_rate, frame.num_channels, "s16")
        if self._open is not None and self._open != fmt:
            self.playout.end()
            self._open = None
        if self._open is None:
            self.playout.begin(fmt)
            self._open = fmt
        try:
            self.playout.push(frame.audio)
        except PlayoutError as exc:
            self.create_task(self.push_error(error_msg=f"avatar: {exc}"))

    async def _tick(self) -> None:
        """One tick per frame period on the wall clock: read a frame of speech, push what the generator draws."""
        period = 1.0 / self._fps
        start, tick = time.monotonic(), 0
        while True:
            wait = start + tick * period - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif -wait > MAX_BEHIND_TICKS * period:
                tick += int(-wait / period)
                continue
            drawn = await asyncio.to_thread(self._render)
            for frame, shown in drawn:
                await self._push(frame, speaking=shown.speech_samples > 0)
                for event in shown.events:
                    await self._report(event)
            tick += 1

    def _render(self) -> list[tuple[AvatarFrame, Shown]]:
        """On a worker thread (ONNX Runtime releases the GIL): one tick's audio in, the frames it completes out."""
        self.generator.push_audio(self.playout.read())
        return [(frame, self.playout.shown()) for frame in self.generator.frames()]

    async def _push(self, frame: AvatarFrame, speaking: bool) -> None:
        height, width = frame.image.shape[:2]
        image = OutputImageRawFrame(image=frame.image.tobytes(), size=(width, height), format="RGB")
        image.sync_with_audio = True  # shown when the audio pushed before it has played: with its own audio
        await self.push_frame(image)
        if speaking:  # idle frames carry no sound: the transport's own silence keeps "bot speaking" off
            pcm = (np.clip(frame.audio, -1.0, 1.0) * 32767.0).astype(np.int16)
            await self.push_frame(TTSAudioRawFrame(audio=pcm.tobytes(), sample_rate=self._rate, num_channels=1))

    async def _report(self, event: PlaybackEvent) -> None:
        if event.kind == "playback_started":
            await self._call_event_handler("on_playback_started", event.segment)
        else:
            await self._call_event_handler("on_playback_finished", event.segment, event.position_s,
                                           event.interrupted)
