"""The audio inlet: a playout delay set once, kept through jitter, gaps, bursts and stalls."""

from __future__ import annotations

import numpy as np

from s2v.server.audio_inlet import AudioInlet

READ = 640  # 40 ms at 16 kHz, one video frame
PACKET = 320  # 20 ms, as a browser sends
DELAY = 960


def ramp(start: int, n: int) -> np.ndarray:
    """Samples whose values are their positions (+1, so that silence, 0, stands out)."""
    return np.arange(start + 1, start + 1 + n, dtype=np.float32)


def inlet() -> AudioInlet:
    return AudioInlet(delay_samples=DELAY, read_samples=READ)


def test_silence_until_audio_then_the_newest_sample_plays_one_delay_later():
    audio = inlet()
    assert not audio.read().any()
    audio.push(ramp(0, 1280), 0)
    first = audio.read()
    np.testing.assert_array_equal(first, ramp(1280 - DELAY, READ))


def test_steady_packets_come_out_whole_in_order_at_a_constant_depth():
    audio = inlet()
    position = 0
    out, depths = [], []
    for _ in range(100):
        for _ in range(2):
            audio.push(ramp(position, PACKET), position)
            position += PACKET
        depths.append(audio.depth_samples)
        out.append(audio.read())
    played = np.concatenate(out)
    played = played[np.flatnonzero(played)[0] :]
    np.testing.assert_array_equal(np.diff(played), 1)  # no gap, no repeat
    assert len(set(depths[1:])) == 1
    assert audio.counters.underruns == audio.counters.late_samples == audio.counters.dropped_samples == 0


def test_a_stall_does_not_move_the_timeline():
    audio = inlet()
    audio.push(ramp(0, 1280), 0)
    audio.read()  # plays 320..960
    # The event loop stalls: the next packets are delivered only after the next read.
    stalled = audio.read()
    np.testing.assert_array_equal(stalled[:320], ramp(960, 320))  # what had come
    assert not stalled[320:].any() and audio.counters.underruns == 1
    audio.push(ramp(1280, 640), 1280)  # the late burst: its first half's time has passed
    audio.push(ramp(1920, 640), 1920)  # and the packets after it, on time
    assert audio.counters.late_samples == 320
    np.testing.assert_array_equal(audio.read(), ramp(1600, READ))  # same delay as before


def test_a_lost_packet_is_a_silent_gap_not_a_shift():
    audio = inlet()
    audio.push(ramp(0, 1280), 0)
    audio.read()  # plays 320..960
    audio.push(ramp(1600, 960), 1600)  # 1280..1600 never arrives
    played = np.concatenate([audio.read() for _ in range(2)])
    expected = np.concatenate([ramp(960, 320), np.zeros(320, np.float32), ramp(1600, 640)])
    np.testing.assert_array_equal(played, expected)
    assert audio.counters.underruns == 0


def test_a_burst_beyond_the_room_drops_the_oldest_audio_and_keeps_the_delay():
    audio = inlet()
    audio.push(ramp(0, 1280), 0)
    audio.read()
    audio.push(ramp(1280, 3000), 1280)
    assert audio.depth_samples == DELAY
    assert audio.counters.dropped_samples > 0
    np.testing.assert_array_equal(audio.read(), ramp(4280 - DELAY, READ))


def test_audio_queued_before_the_first_read_does_not_add_latency():
    audio = inlet()
    for position in range(0, 8000, PACKET):  # arrived while the call was still being set up
        audio.push(ramp(position, PACKET), position)
    np.testing.assert_array_equal(audio.read(), ramp(8000 - DELAY, READ))


def test_clear_forgets_buffered_speech():
    audio = inlet()
    audio.push(ramp(0, 1200), 0)
    audio.clear()
    assert audio.depth_samples == 0
    assert not audio.read().any()
    audio.push(ramp(5000, 1280), 5000)
    np.testing.assert_array_equal(audio.read(), ramp(6280 - DELAY, READ))


def test_a_timeline_jump_ahead_resynchronises_without_filling_the_distance():
    audio = inlet()
    audio.push(ramp(0, 1280), 0)
    audio.read()
    far = 2**31  # a peer's RTP timestamp leaps forward: filling the gap would be 8 GiB of silence
    audio.push(ramp(5000, 1280), far)  # (values small enough for float32 to tell apart)
    assert audio._buffer.nbytes < 64 * 1024  # nothing grew toward the new position
    np.testing.assert_array_equal(audio.read(), ramp(5000 + 1280 - DELAY, READ))  # the delay set afresh there
    assert audio.depth_samples == DELAY - READ
