"""Cheap on-the-fly waveform augmentation, so festival's clean studio speech looks like a microphone.

Level (whisper-quiet to clipped), noise, speaking rate/pitch, phone-like band limits, sources
resampled from other rates, an Opus round-trip as WebRTC sends it, and room reverb all change the
spectrum's look but not the mouth shapes, which is what the network must learn to ignore: a loud
/m/ is still closed, a quiet /aa/ still open. Speed (which moves pitch with it) is applied separately
(`change_speed`) because it rescales the target timeline too; formant shifts are a mel-scale warp
in the network's front end (VTLP, `s2v.features.mel_filterbank`).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from scipy import signal

from s2v.contract import CONTRACT

SR = CONTRACT.audio.sample_rate


def random_speed(rng: np.random.Generator, max_change: float = 0.15) -> Fraction:
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


def _other_source_rate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As if recorded at 8 kHz (nothing above 4 kHz), or at 44.1/48 kHz and brought to 16 kHz by a cheap
    linear-interpolation resampler (aliasing, a soft top octave) rather than scipy's clean polyphase filter."""
    if rng.random() < 0.4:
        return signal.resample_poly(signal.resample_poly(x, 1, 2), 2, 1)[: len(x)]
    rate = 44100 if rng.random() < 0.5 else 48000
    hi = signal.resample_poly(x, rate // 100, SR // 100)
    return np.interp(np.arange(len(x)) * rate / SR, np.arange(len(hi)), hi)


def opus_round_trip(x: np.ndarray, bitrate: int) -> np.ndarray:
    """Encode with libopus at `bitrate` bit/s and decode, as a WebRTC peer would hear it (same length out).

    Encoded at 16 kHz and complexity 0 (as phones run it), 3x cheaper than 48 kHz at complexity 10, to keep
    batches cheap; FFmpeg's decoder returns 48 kHz and applies the pre-skip, so the decoded audio needs
    only a resample, no delay correction.
    """
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = SR, "mono", "s16", bitrate
    enc.options = {"application": "voip", "compression_level": "0"}
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)[None]
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
    frame.sample_rate, frame.pts = SR, 0
    packets = list(enc.encode(frame)) + list(enc.encode(None))
    dec = av.CodecContext.create("opus", "r")
    dec.extradata = enc.extradata
    out = [f.to_ndarray().reshape(-1) for p in [*packets, None] for f in dec.decode(p)]
    y = signal.resample_poly(np.concatenate(out), 1, 48000 // SR)
    return np.pad(y, (0, max(len(x) - len(y), 0)))[: len(x)]


def degrade(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random reverb, band limit, other source rate, noise (5-30 dB SNR, sometimes starting or stopping mid-crop),
    level (peak -45..+8 dBFS, clipped) and an Opus round-trip at 16-48 kbit/s after the level (the codec sees
    what the microphone sent); float32 out."""
    y = x.astype(np.float64)
    if rng.random() < 0.3:
        y = _reverb(y, rng)
    if rng.random() < 0.3:
        y = _band_limit(y, rng)
    elif rng.random() < 0.3:
        y = _other_source_rate(y, rng)
    speech_rms = np.sqrt(np.mean(y**2)) + 1e-9
    if rng.random() < 0.7:
        snr_db = rng.uniform(5, 30)
        noise = _coloured_noise(len(y), rng) * speech_rms * 10 ** (-snr_db / 20)
        if rng.random() < 0.3:  # a noise floor that starts or stops in a pause (a microphone opening) is not speech
            cut = int(rng.integers(len(y)))
            noise[(slice(None, cut), slice(cut, None))[int(rng.integers(2))]] = 0.0
        y = y + noise
    y *= 10 ** (rng.uniform(-45, 8) / 20) / (np.max(np.abs(y)) + 1e-9)
    y = np.clip(y, -1.0, 1.0)
    if rng.random() < 0.12:
        y = opus_round_trip(y, int(rng.choice([16000, 24000, 32000, 48000])))
    return np.clip(y, -1.0, 1.0).astype(np.float32)
