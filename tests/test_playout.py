"""The agent segment playout on its own: formats, positions, events, clear, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from s2v.runtime.playout import MAX_SEGMENTS, PcmFormat, PlayoutError, SegmentPlayout

RATE, STEP = 16000, 640


def _tone(seconds: float, rate: int, channels: int = 1, dtype=np.int16) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 220 * t)
    pcm = np.repeat(mono[:, None], channels, axis=1).reshape(-1)
    return (pcm * 32767).astype(np.int16) if dtype == np.int16 else pcm.astype(np.float32)


def _play(playout: SegmentPlayout, frames: int, lookahead: int = 2) -> list[tuple[int, dict]]:
    """Read `frames` ticks, showing each frame `lookahead` ticks later as the generator does."""
    events = []
    for tick in range(frames):
        playout.read()
        if tick >= lookahead:
            events += [(tick - lookahead, e.as_json()) for e in playout.shown().events]
    return events


@pytest.mark.parametrize("rate,channels,fmt", [(24000, 1, "s16"), (44100, 2, "s16"), (48000, 2, "f32"),
                                               (8000, 1, "f32"), (16000, 1, "s16")])
def test_any_rate_and_layout_plays_for_its_own_duration(rate, channels, fmt):
    playout = SegmentPlayout(RATE, STEP, max_buffered_s=30)
    segment = playout.begin(PcmFormat(rate, channels, fmt))
    pcm = _tone(1.0, rate, channels, np.int16 if fmt == "s16" else np.float32)
    for chunk in np.array_split(pcm.reshape(-1, channels), 7):  # uneven chunks, whole sample frames
        playout.push(chunk.reshape(-1).tobytes())
    playout.end()
    assert playout.buffered_s == pytest.approx(1.0, abs=0.005)
    events = _play(playout, 40)
    assert [(i, e["type"]) for i, e in events] == [(0, "playback_started"), (24, "playback_finished")]
    assert events[1][1] == {"type": "playback_finished", "segment": segment, "position_s": pytest.approx(1.0, abs=0.005),
                            "interrupted": False}


def test_audio_comes_out_in_order_and_level():
    playout = SegmentPlayout(RATE, STEP, max_buffered_s=30)
    playout.begin(PcmFormat(RATE))
    pcm = _tone(0.5, RATE)
    playout.push(pcm.tobytes())
    playout.end()
    out = np.concatenate([playout.read() for _ in range(13)])
    assert np.allclose(out[: len(pcm)], pcm / 32768.0, atol=2e-3)  # same rate: resampled 1:1
    assert not out[len(pcm) :].any()  # then silence


def test_segments_follow_each_other_and_an_empty_one_still_finishes():
    playout = SegmentPlayout(RATE, STEP, max_buffered_s=30)
    ids = []
    for seconds in (0.4, 0.0, 0.2):
        ids.append(playout.begin(PcmFormat(RATE)))
        playout.push(_tone(seconds, RATE).tobytes())
        playout.end()
    events = _play(playout, 30)
    kinds = [(e["type"], e["segment"]) for _, e in events]
    assert kinds == [("playback_started", ids[0]), ("playback_finished", ids[0]), ("playback_started", ids[1]),
                     ("playback_finished", ids[1]), ("playback_started", ids[2]), ("playback_finished", ids[2])]
    assert [e["position_s"] for _, e in events if e["type"] == "playback_finished"] == pytest.approx([0.4, 0.0, 0.2])
    assert events[-1][0] == 14  # 0.6 s of speech: frames 0..14


def test_a_slow_agent_leaves_silence_and_the_segment_waits():
    playout = SegmentPlayout(RATE, STEP, max_buffered_s=30)
    playout.begin(PcmFormat(RATE))
    playout.push(_tone(0.08, RATE).tobytes())
    events = _play(playout, 10)  # the TTS stalls: two frames of speech, then silence, no finish yet
    assert [e["type"] for _, e in events] == ["playback_started"]
    playout.push(_tone(0.08, RATE).tobytes())
    playout.end()
    events = _play(playout, 10, lookahead=0)
    finished = [e for _, e in events if e["type"] == "playback_finished"]
    assert finished and finished[0]["position_s"] == pytest.approx(0.16)


def test_clear_cuts_every_segment_once_at_the_position_shown():
    playout = SegmentPlayout(RATE, STEP, max_buffered_s=30)
    first = playout.begin(PcmFormat(RATE))
    playout.push(_tone(2.0, RATE).tobytes())
    playout.end()
    second = playout.begin(PcmFormat(RATE))
    playout.push(_tone(1.0, RATE).tobytes())
    _play(playout, 12)  # 12 frames read, 10 shown
    cut = [e.as_json() for e in playout.clear()]
    assert cut == [{"type": "playback_finished", "segment": first, "position_s": 0.4, "interrupted": True},
                   {"type": "playback_finished", "segment": second, "position_s": 0.0, "interrupted": True}]
    assert playout.buffered_s == 0
    assert not np.concatenate([playout.read() for _ in range(5)]).any()
    assert [playout.shown() for _ in range(5)] == [([], 0)] * 5  # the two frames read before the clear tell nothing
    with pytest.raises(PlayoutError, match="outside a segment"):  # the open segment was cleared too
        playout.push(b"\0\0")


def test_bad_input_is_refused_with_a_reason_and_changes_nothing():
    playout = SegmentPlayout(RATE, STEP, max_buffered_s=2)
    for bad, match in [({"sample_rate": 0}, "sample_rate"), ({"sample_rate": 16000.5}, "sample_rate"),
                       ({"sample_rate": True}, "sample_rate"), ({}, "sample_rate"),
                       ({"sample_rate": 16000, "channels": 6}, "channels"),
                       ({"sample_rate": 16000, "format": "mulaw"}, "format")]:
        with pytest.raises(PlayoutError, match=match):
            PcmFormat.from_json(bad)
    with pytest.raises(PlayoutError, match="outside a segment"):
        playout.push(b"\0\0")
    with pytest.raises(PlayoutError, match="without an open segment"):
        playout.end()
    playout.begin(PcmFormat(16000, 2))
    with pytest.raises(PlayoutError, match="still open"):
        playout.begin(PcmFormat(16000))
    with pytest.raises(PlayoutError, match="whole number of 4-byte"):
        playout.push(b"\0" * 6)
    playout.push(_tone(1.5, 16000, 2).tobytes())
    with pytest.raises(PlayoutError, match="ahead of playback"):  # 10 minutes in one go: refused, not queued
        playout.push(_tone(600, 16000, 2).tobytes())
    assert playout.buffered_s == pytest.approx(1.5, abs=0.01)
    nan = np.full(1600, np.nan, np.float32)
    playout.end()
    playout.begin(PcmFormat(16000, 1, "f32"))
    playout.push(nan.tobytes())  # NaN from a broken TTS plays as silence
    playout.end()
    audio = np.concatenate([playout.read() for _ in range(45)])
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


def test_segments_queued_at_once_are_bounded():
    playout = SegmentPlayout(RATE, STEP, max_buffered_s=600)
    playout.begin(PcmFormat(RATE))
    playout.push(_tone(10.0, RATE).tobytes())  # a long answer playing...
    playout.end()
    with pytest.raises(PlayoutError, match="segments are already queued"):
        for _ in range(MAX_SEGMENTS):  # ... and a flood of empty segments behind it
            playout.begin(PcmFormat(RATE))
            playout.end()
    assert len(_play(playout, 300)) == 2 * MAX_SEGMENTS  # every one that was accepted plays and finishes
