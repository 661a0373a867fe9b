"""Cheap on-the-fly waveform augmentation, so festival's clean studio speech looks like a microphone.

Level (whisper-quiet to clipped), noise, speaking rate/pitch, phone-like band limits and room
reverb all change the spectrum's look but not the mouth shapes, which is what the network must
learn to ignore: a loud /m/ is still closed, a quiet /aa/ still open. Speed is applied separately
(`change_speed`) because it rescales the target timeline too.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np
from scipy import signal

from s2v.contract import CONTRACT

log = logging.getLogger(__name__)

SR = CONTRACT.audio.sample_rate


def random_speed(rng: np.random.Generator, max_change: float = 0.1) -> Fraction:
    """Playback-rate factor in [1 - max_change, 1 + max_change] as a small fraction (for resample_poly)."""
    return Fraction(int(round(40 * (1 + rng.uniform(-max_change, max_change)))), 40)


def change_speed(x: np.ndarray, speed: Fraction) -> np.ndarray:
    """Play `x` `speed` times faster (shorter and higher), as a tape would."""
    if speed == 1:
        return x
    return signal.resample_poly(x, speed.denominator, speed.numerator).astype(np.float32)


def _coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink-ish or brown-ish noise with unit RMS."""
    noise = rng.standard_normal(n)
    pole = rng.choice([0.0, 0.9, 0.99])
    if pole:
        noise = signal.lfilter([1.0], [1.0, -pole], noise)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def _reverb(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolve with a synthetic room: a direct path plus exponentially decaying noise (RT60 0.15-0.7 s)."""
    rt60 = rng.uniform(0.15, 0.7)
    t = np.arange(int(rt60 * SR)) / SR
    ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)
    ir *= rng.uniform(0.1, 0.5) / np.sqrt(np.sum(ir**2))
    ir[0] = 1.0
    return signal.fftconvolve(x, ir)[: len(x)]


def _band_limit(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random low-pass (cheap mic, codec) or telephone-like band-pass."""
    if rng.random() < 0.5:
        sos = signal.butter(4, rng.uniform(2500, 7000), "lowpass", fs=SR, output="sos")
    else:
        sos = signal.butter(2, [rng.uniform(150, 400), rng.uniform(3000, 4000)], "bandpass", fs=SR, output="sos")
    return signal.sosfilt(sos, x)


def degrade(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random reverb, band limit, noise (5-30 dB SNR) and level (peak -45..+8 dBFS, clipped); float32 out."""
    y = x.astype(np.float64)
    if rng.random() < 0.3:
        y = _reverb(y, rng)
    if rng.random() < 0.4:
        y = _band_limit(y, rng)
    speech_rms = np.sqrt(np.mean(y**2)) + 1e-9
    if rng.random() < 0.7:
        snr_db = rng.uniform(5, 30)
        y = y + _coloured_noise(len(y), rng) * speech_rms * 10 ** (-snr_db / 20)
    y *= 10 ** (rng.uniform(-45, 8) / 20) / (np.max(np.abs(y)) + 1e-9)
    return np.clip(y, -1.0, 1.0).astype(np.float32)
