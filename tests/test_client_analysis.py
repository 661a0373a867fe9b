"""The client's measurements on signals whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from s2v.client import analysis


def test_speech_onset_finds_the_first_loud_window():
    pcm = np.zeros(16000, np.float32)
    pcm[6000:9000] = 0.5 * np.sin(np.arange(3000) * 0.3)
    assert analysis.speech_onset(pcm, 16000) == pytest.approx(0.375, abs=0.011)


def test_audio_alignment_recovers_a_delay_and_scores_an_echo_near_one():
    rng = np.random.default_rng(0)
    sent = rng.standard_normal(16000).astype(np.float32)
    received = np.concatenate([np.zeros(1234, np.float32), 0.3 * sent, np.zeros(500, np.float32)])
    delay, score = analysis.audio_alignment(sent, received, 16000)
    assert delay == pytest.approx(1234 / 16000)
    assert score > 0.99


def test_lag_measures_how_far_a_signal_trails_its_reference():
    t = np.arange(0, 4, 0.01)
    envelope = np.clip(np.sin(2 * np.pi * 1.3 * t) + np.sin(2 * np.pi * 0.7 * t), 0, None)
    frames_t = np.arange(0, 4, 0.04)
    mouth = np.interp(frames_t - 0.06, t, envelope)  # the picture trails the sound by 60 ms
    shift, peak = analysis.lag(t, envelope, frames_t, mouth)
    assert shift == pytest.approx(0.06, abs=0.01)
    assert peak > 0.9


def test_motion_onset_ignores_small_idle_motion_before_the_mouth_opens():
    times = np.arange(50) * 0.04
    motion = np.full(50, 0.3)
    motion[::7] = 0.6  # idle sway
    motion[30:] = np.linspace(5, 20, 20)
    assert analysis.motion_onset(times, motion, after=0.2) == pytest.approx(times[30])


def test_mouth_region_prefers_the_servers_mouth_box():
    assert analysis.mouth_region({"box": [0, 0, 100, 100], "mouth": [40, 60, 60, 80]}) == (40, 60, 60, 80)
    assert analysis.mouth_region({"box": [0, 0, 100, 100]}) == (30, 60, 70, 90)
