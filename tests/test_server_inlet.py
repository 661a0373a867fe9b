"""The audio inlet: a playout delay set once, kept through jitter, gaps, bursts and stalls."""

from __future__ import annotations

import time

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
    assert audio._ring.nbytes == (DELAY + 2 * READ) * 4  # the ring it started with: nothing grew toward it
    np.testing.assert_array_equal(audio.read(), ramp(5000 + 1280 - DELAY, READ))  # the delay set afresh there
    assert audio.depth_samples == DELAY - READ


def test_jitter_loss_and_bursts_play_the_timeline_in_order_from_a_ring_that_never_grows():
    rng = np.random.default_rng(7)
    audio = inlet()
    size = audio._ring.nbytes
    packets = [(ramp(p, PACKET), p) for p in range(0, 400 * PACKET, PACKET) if rng.random() > 0.05]  # 5 % lost
    order = sorted(range(len(packets)), key=lambda i: i + rng.normal(0, 1.5))  # delivered out of order
    played = []
    for k, i in enumerate(order):
        audio.push(*packets[i])
        if k % 2 == 1 and rng.random() > 0.1:  # the reader stalls now and then, then the packets come in a burst
            played.append(audio.read())
    out = np.concatenate(played)
    heard = out[out != 0]  # a sample's value is its position + 1
    assert len(heard) > 0.5 * len(out) and np.all(np.diff(heard) >= 1)  # in order: no repeat, never back
    assert audio.counters.dropped_samples > 0 and audio.counters.late_samples > 0  # the run did stress it
    assert audio._ring.nbytes == size


def test_a_timeline_that_restarts_is_followed_but_a_very_late_packet_is_only_dropped():
    audio = inlet()
    position = 40 * READ
    audio.push(ramp(0, position), 0)
    audio.read()
    audio.push(ramp(9000, PACKET), position - 20 * READ)  # 0.8 s late: dropped, the timeline goes on
    assert audio.counters.late_samples == PACKET
    assert audio.read()[0] == position - DELAY + READ + 1  # no rewind: the next read follows the last
    audio.push(ramp(5000, 1280), 0)  # the sender restarts at 0 (aiortc reads a timestamp jump back so)
    np.testing.assert_array_equal(audio.read(), ramp(5000 + 1280 - DELAY, READ))  # followed, at the same delay


def test_each_read_remembers_when_its_audio_had_all_arrived():
    audio = inlet()
    assert not audio.read().any() and audio.arrival(0) is None  # nothing had come
    pushed = []
    for i in range(4):  # 80 ms of packets, 20 ms apart
        audio.push(ramp(i * PACKET, PACKET), i * PACKET)
        pushed.append(time.monotonic())
        time.sleep(0.02)
    audio.read()  # positions 320..960: complete with the third packet
    assert pushed[1] < audio.arrival(1) <= pushed[2]
    audio.read()  # 960..1600: never all arrived
    assert audio.arrival(2) is None and audio.arrival(5) is None
