"""The pipecat service in a real pipecat pipeline: TTS audio in, the avatar's pictures with their audio out."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("pipecat", reason="the pipecat extra is not installed (pip install -e '.[pipecat]')")

from pipecat.frames.frames import (  # noqa: E402
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from s2v.client import analysis  # noqa: E402
from s2v.client.pipecat_service import AvatarVideoService  # noqa: E402
from tests.conftest import TTS_RATE  # noqa: E402



class Recorder(FrameProcessor):
    """The transport's place: keeps every frame that reaches it, with its arrival time."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[float, Frame]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.frames.append((time.monotonic(), frame))
        await self.push_frame(frame, direction)


def _tts_frames(pcm: np.ndarray) -> list[TTSAudioRawFrame]:
    step = TTS_RATE // 10  # 100 ms chunks, as a streaming TTS sends them
    return [TTSAudioRawFrame(audio=pcm[i : i + step].tobytes(), sample_rate=TTS_RATE, num_channels=1)
            for i in range(0, len(pcm), step)]


async def test_pipecat_pipeline_gets_25_fps_pictures_with_their_audio_and_stops_on_interruption(
        model, avatar, tts_24k):
    service = AvatarVideoService(model=model, avatar=avatar)
    recorder = Recorder()
    worker = PipelineWorker(Pipeline([service, recorder]), cancel_on_idle_timeout=False, params=PipelineParams())
    playback: list[tuple[str, int, float, bool]] = []

    @service.event_handler("on_playback_started")
    async def started(_, segment):
        playback.append(("started", segment, 0.0, False))

    @service.event_handler("on_playback_finished")
    async def finished(_, segment, position_s, interrupted):
        playback.append(("finished", segment, position_s, interrupted))

    tts = _tts_frames(tts_24k)
    duration = sum(len(f.audio) // 2 for f in tts) / TTS_RATE
    marks: dict[str, float] = {}

    async def drive() -> None:
        started_up = asyncio.Event()
        worker.event_handler("on_pipeline_started")(lambda *_: started_up.set())
        await asyncio.wait_for(started_up.wait(), 10)
        await asyncio.sleep(0.5)
        marks["speech"] = time.monotonic()
        for answer in (tts, tts + tts):  # the second answer is interrupted mid-way
            await worker.queue_frame(TTSStartedFrame())
            for frame in answer:
                await worker.queue_frame(frame)
                await asyncio.sleep(0.02)  # 5x faster than real time
            await worker.queue_frame(TTSStoppedFrame())
            if "second" not in marks:
                await asyncio.sleep(duration + 0.5)
                marks["second"] = time.monotonic()
        await asyncio.sleep(1.0)
        marks["interrupt"] = time.monotonic()
        await worker.queue_frame(InterruptionFrame())
        await asyncio.sleep(1.0)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner()
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), 60)

    images = [(t, f) for t, f in recorder.frames if isinstance(f, OutputImageRawFrame)]
    audio = [(t, f) for t, f in recorder.frames if isinstance(f, TTSAudioRawFrame)]
    times = np.array([t for t, _ in images])
    fps = (len(times) - 1) / (times[-1] - times[0])
    print(f"pipecat: {len(images)} pictures at {fps:.2f} fps, {len(audio)} audio frames")
    assert fps == pytest.approx(25, abs=0.3)
    assert np.diff(times).max() < 0.2
    assert all(f.sync_with_audio and f.size == (avatar.background.shape[1], avatar.background.shape[0])
               for _, f in images)

    # Each audio frame follows the picture it belongs to, and the first answer comes out whole and in order.
    order = [type(f) for _, f in recorder.frames if isinstance(f, (OutputImageRawFrame, TTSAudioRawFrame))]
    assert all(order[i - 1] is OutputImageRawFrame for i, kind in enumerate(order) if kind is TTSAudioRawFrame)
    first = np.concatenate([np.frombuffer(f.audio, np.int16) for t, f in audio if t < marks["second"]])
    assert all(f.sample_rate == 16000 and len(f.audio) == 1280 for _, f in audio)
    sent = np.concatenate([np.frombuffer(f.audio, np.int16) for f in tts]).astype(np.float32)
    sent16 = np.interp(np.arange(int(len(sent) * 16000 / TTS_RATE)) / 16000, np.arange(len(sent)) / TTS_RATE, sent)
    delay, score = analysis.audio_alignment(sent16, first.astype(np.float32), 16000)
    assert score > 0.95 and delay < 0.05
    assert abs(len(first) / 16000 - duration) < 0.1

    # The mouth moves with the first answer; after the interruption no more speech, and the mouth rests.
    region = analysis.mouth_region({"box": [int(v) for v in avatar.box]})
    x0, y0, x1, y1 = region
    crops = np.stack([np.frombuffer(f.image, np.uint8).reshape(f.size[1], f.size[0], 3)[y0:y1, x0:x1]
                      for _, f in images])
    cavity = analysis.cavity(crops)
    idle = cavity[times < marks["speech"]]
    speaking = cavity[(times > marks["speech"] + 0.3) & (times < marks["speech"] + duration)]
    assert np.quantile(speaking, 0.9) > 2 * np.quantile(idle, 0.95) + 0.005
    after = [t for t, _ in audio if t > marks["interrupt"]]
    assert len(after) <= 1, "speech stopped within one frame of the interruption"
    ceiling = np.quantile(idle, 0.95) + 0.25 * (np.quantile(speaking, 0.9) - np.quantile(idle, 0.95))
    rest_at = analysis.settles(times, cavity, marks["interrupt"], ceiling)
    assert rest_at is not None and rest_at - marks["interrupt"] < 0.2

    assert [p[:2] for p in playback] == [("started", 1), ("finished", 1), ("started", 2), ("finished", 2)]
    assert playback[1][2] == pytest.approx(duration, abs=0.01) and playback[1][3] is False
    assert playback[3][3] is True
    assert playback[3][2] == pytest.approx(marks["interrupt"] - marks["second"], abs=0.3)  # cut where it was heard
