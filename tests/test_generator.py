"""The streaming generator on its own: timing, audio carried with frames, chunking, interrupt, idle life."""

from __future__ import annotations

import numpy as np
import pytest

from s2v.contract import MOTION_CHANNELS
from s2v.runtime.generator import StreamingGenerator

STEP = 640
JAW = MOTION_CHANNELS.index("jaw_open")


def run(generator: StreamingGenerator, pieces: list[np.ndarray]) -> list:
    frames = []
    for piece in pieces:
        generator.push_audio(piece)
        frames += list(generator.frames())
    return frames + list(generator.flush())


def test_frames_carry_exactly_the_audio_pushed(model, avatar, speech_16k):
    frames = run(StreamingGenerator(model, avatar), [speech_16k])
    assert [f.index for f in frames] == list(range(len(frames)))
    assert len(frames) == -(-len(speech_16k) // STEP)
    audio = np.concatenate([f.audio for f in frames])
    np.testing.assert_array_equal(audio[: len(speech_16k)], speech_16k)
    assert not audio[len(speech_16k) :].any()
    height, width = avatar.background.shape[:2]
    assert all(f.image.shape == (height, width, 3) and f.image.dtype == np.uint8 for f in frames)


def test_a_frame_waits_for_its_lookahead_and_no_more(model, avatar):
    generator = StreamingGenerator(model, avatar)
    lookahead = model.contract.lookahead_frames
    produced = []
    for step in range(6):
        generator.push_audio(np.zeros(STEP, np.float32))
        produced.append(len(list(generator.frames())))
    assert produced == [0] * lookahead + [1] * (6 - lookahead)
    assert generator.latency_s == pytest.approx((1 + lookahead) * 0.04)


def test_chunking_does_not_change_the_result(model, avatar, speech_16k):
    whole = run(StreamingGenerator(model, avatar, max_batch=16), [speech_16k])
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.choice(len(speech_16k), size=40, replace=False))
    pieces = np.split(speech_16k, cuts)
    streamed = run(StreamingGenerator(model, avatar, max_batch=1), pieces)
    assert len(whole) == len(streamed)
    motion_a = np.stack([f.motion for f in whole])
    motion_b = np.stack([f.motion for f in streamed])
    assert np.abs(motion_a - motion_b).max() < 1e-3
    assert max(np.abs(a.image.astype(int) - b.image.astype(int)).max() for a, b in zip(whole, streamed)) <= 2


def test_mouth_follows_speech_and_rests_in_silence(model, avatar, speech_16k, speech_span):
    frames = run(StreamingGenerator(model, avatar), [speech_16k])
    jaw = np.array([f.motion[JAW] for f in frames])
    start, end = (round(t * 25) for t in speech_span)
    speaking, silent = jaw[start:end], np.concatenate([jaw[: start - 3], jaw[end + 5 :]])
    assert speaking.max() > 0.4
    assert speaking.std() > 0.08  # opens and closes, not a constant
    assert silent.max() < 0.15


def test_interrupt_returns_the_mouth_to_rest_on_the_next_frame(model, avatar, speech_16k, speech_span):
    generator = StreamingGenerator(model, avatar)
    start, end = (round(t * 25) for t in speech_span)
    generator.push_audio(speech_16k[: (start + (end - start) // 2) * STEP])
    speaking = list(generator.frames())
    assert max(f.motion[JAW] for f in speaking[-10:]) > 0.3
    generator.push_audio(speech_16k)  # queued speech that the interrupt must discard
    rest = generator.interrupt()
    assert generator.pending_samples() == 0
    generator.push_audio(np.zeros(STEP, np.float32))
    after = list(generator.frames())
    assert len(after) == 1 and after[0].index == speaking[-1].index + 1 == rest
    assert after[0].motion[JAW] < 0.1
    assert not after[0].audio.any()


def test_the_avatar_stays_alive_in_silence(model, avatar):
    generator = StreamingGenerator(model, avatar)
    frames = run(generator, [np.zeros(STEP * 150, np.float32)])
    x0, y0, x1, y1 = avatar.box
    crops = np.stack([f.image[y0:y1, x0:x1].astype(np.int16) for f in frames])
    change = np.abs(np.diff(crops, axis=0)).mean(axis=(1, 2, 3))
    assert (change > 0).mean() > 0.5  # head sway and blinks keep the picture moving
    outside = np.stack([f.image for f in frames])
    outside[:, y0:y1, x0:x1] = 0
    assert (outside == outside[0]).all()  # nothing outside the head crop ever changes
