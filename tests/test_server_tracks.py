"""Output tracks on one clock: frames released at their timestamps, replaced (never waited for) when late."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from s2v.server.clock import SessionClock
from s2v.server.metrics import SessionMetrics
from s2v.server.tracks import PACKET_SAMPLES, AvatarAudioTrack, AvatarVideoTrack, FrameOutlet, Upsampler, video_frame


def image(level: int) -> np.ndarray:
    return np.full((64, 64, 3), level, np.uint8)


async def started_clock(render_margin_s: float = 0.0) -> SessionClock:
    clock = SessionClock(fps=25, lookahead_frames=0, render_margin_s=render_margin_s)
    clock.begin()
    return clock


async def test_video_frames_leave_at_their_release_time_with_pts_on_the_90khz_clock():
    clock = await started_clock()
    outlet: FrameOutlet = FrameOutlet(asyncio.get_running_loop())
    track = AvatarVideoTrack(clock, outlet, SessionMetrics(), video_frame(image(0)))
    for i in range(5):
        outlet.put(i, video_frame(image(10 * i)))
    for i in range(5):
        frame = await track.recv()
        assert frame.pts == i * 3600
        assert -0.002 <= clock.now() - clock.release_time(i) < 0.05  # never early; late only by scheduling


async def test_a_missing_video_frame_repeats_the_last_picture_and_a_late_one_is_discarded():
    clock = await started_clock()
    metrics = SessionMetrics()
    outlet: FrameOutlet = FrameOutlet(asyncio.get_running_loop())
    track = AvatarVideoTrack(clock, outlet, metrics, video_frame(image(0)))
    outlet.put(0, video_frame(image(50)))
    first = await track.recv()
    second = await track.recv()  # frame 1 never came
    assert second.pts == 3600
    assert second.to_ndarray(format="rgb24").mean() == pytest.approx(first.to_ndarray(format="rgb24").mean(), abs=1)
    assert metrics.filled == 1
    outlet.put(1, video_frame(image(90)))  # too late: frame 2 is due next
    outlet.put(2, video_frame(image(120)))
    third = await track.recv()
    assert third.pts == 2 * 3600 and metrics.dropped == 1


async def test_audio_goes_out_as_20ms_packets_of_each_frames_own_samples_or_silence():
    clock = await started_clock()
    outlet: FrameOutlet = FrameOutlet(asyncio.get_running_loop())
    track = AvatarAudioTrack(clock, outlet)
    samples = np.arange(2 * PACKET_SAMPLES, dtype=np.int16)
    outlet.put(0, samples)
    frames = [await track.recv() for _ in range(4)]  # frame 0 in two halves, then frame 1 (missing)
    assert [f.pts for f in frames] == [0, 960, 1920, 2880]
    assert all(f.samples == PACKET_SAMPLES and f.sample_rate == 48000 for f in frames)
    np.testing.assert_array_equal(np.concatenate([f.to_ndarray().reshape(-1) for f in frames[:2]]), samples)
    assert not any(f.to_ndarray().any() for f in frames[2:])
    assert -0.002 <= clock.now() - (clock.release_time(1) + 0.02) < 0.05


def test_the_upsampler_turns_each_40ms_into_exactly_1920_samples_of_the_same_sound():
    upsample = Upsampler()
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    chunks = [upsample(tone[i : i + 640]) for i in range(0, 16000, 640)]
    assert all(len(c) == 1920 for c in chunks)
    out = np.concatenate(chunks).astype(np.float32) / 32767
    reference = 0.5 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000)
    delay = int(np.argmax([np.dot(out[d : d + 40000], reference[:40000]) for d in range(0, 100)]))
    assert delay <= 60  # about 1 ms of resampler delay, constant
    assert np.corrcoef(out[delay : delay + 40000], reference[:40000])[0, 1] > 0.999
