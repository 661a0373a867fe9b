"""Cheap on-the-fly waveform augmentation, so festival's clean studio speech looks like a microphone.

Level (whisper-quiet to clipped, with brief dips between words), breaths, noise, speaking rate/pitch,
phone-like band limits, sources resampled from other rates, an Opus round-trip as WebRTC sends it, and
room reverb all change the spectrum's look but not the mouth shapes, which is what the network must learn to
ignore: a loud /m/ is still closed, a quiet /aa/ still open. Speed (which moves pitch with it) is applied separately
(`change_speed`) because it rescales the target timeline too; formant shifts are a mel-scale warp
in the network's front end (VTLP, `s2v.features.mel_filterbank`).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
from scipy import signal

from s2v.contract import CONTRACT
from s2v.motion.visemes import Phone

SR = CONTRACT.audio.sample_rate
# Phones people hold ("ummm", "sooo", "hmm"), and how often each group is the one held.
SUSTAINED: tuple[tuple[float, frozenset[str]], ...] = (
    (0.5, frozenset(("m",))),
    (0.15, frozenset(("n", "ng"))),
    (0.35, frozenset(("aa", "ae", "ah", "ao", "ax", "eh", "er", "ih", "iy", "uh", "uw"))),
)


def random_speed(rng: np.random.Generator, max_change: float = 0.15) -> Fraction:
    """Playback-rate factor in [1 - max_change, 1 + max_change] as a small fraction (for resample_poly)."""
    return Fraction(int(round(40 * (1 + rng.uniform(-max_change, max_change)))), 40)


def change_speed(x: np.ndarray, speed: Fraction) -> np.ndarray:
    """Play `x` `speed` times faster (shorter and higher), as a tape would."""
    if speed == 1:
        return x
    return signal.resample_poly(x, speed.denominator, speed.numerator).astype(np.float32)


def sustain(audio: np.ndarray, phones: list[Phone], rng: np.random.Generator) -> tuple[np.ndarray, list[Phone]]:
    """Hold one phone 0.15-0.8 s longer, as people do in "ummm" or "sooo": synthesisers never do, and a held
    /m/ must stay closed however long it hums. The extra sound is overlap-added 40 ms grains from the middle of
    the phone (its spectrum, not its exact waveform), spliced in with 10 ms cross-fades; later phones move."""
    groups = [(w, [i for i, p in enumerate(phones) if p.name in names and p.end - p.start >= 0.05])
              for w, names in SUSTAINED]
    groups = [(w, idx) for w, idx in groups if idx]
    if not groups:
        return audio, phones
    weights = np.array([w for w, _ in groups])
    idx = groups[int(rng.choice(len(groups), p=weights / weights.sum()))][1]
    i = idx[int(rng.integers(len(idx)))]
    a, b = int(phones[i].start * SR), min(int(phones[i].end * SR), len(audio))
    core = audio[a + (b - a) // 4 : b - (b - a) // 4]
    grain = min(int(0.04 * SR), len(core)) // 2 * 2
    if grain < 64:
        return audio, phones
    hop, fade, extra = grain // 2, int(0.01 * SR), int(rng.uniform(0.15, 0.8) * SR)
    count = (extra + 2 * fade) // hop + 3
    grains = np.zeros(count * hop + grain)
    window = np.hanning(grain)
    for k in range(count):
        at = int(rng.integers(len(core) - grain + 1))
        grains[k * hop : k * hop + grain] += core[at : at + grain] * window
    fill = grains[hop : hop + extra + 2 * fade]  # past the first grain's ramp
    mid = (a + b) // 2
    ramp = np.linspace(0.0, 1.0, fade)
    left, right = audio[:mid], audio[mid:]
    out = np.concatenate([left[:-fade], left[-fade:] * (1 - ramp) + fill[:fade] * ramp, fill[fade:-fade],
                          fill[-fade:] * (1 - ramp) + right[:fade] * ramp, right[fade:]]).astype(np.float32)
    shift = extra / SR
    held = [p if k < i else Phone(p.name, p.start + shift * (k > i), p.end + shift) for k, p in enumerate(phones)]
    return out, held


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


def _level_dips(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brief drops in level (30-100 ms, 6-25 dB), as people make between words (a glottal stop, creak, a
    softer syllable): on their own they must not read as a closing mouth, which /p b m/ also show as a dip."""
    env = np.ones(len(x))
    for _ in range(1 + rng.poisson(1.0)):
        width = int(rng.uniform(0.03, 0.1) * SR)
        if width >= len(x):
            continue
        at = int(rng.integers(len(x) - width))
        depth = 1.0 - 10 ** (-rng.uniform(6, 25) / 20)
        env[at : at + width] = np.minimum(env[at : at + width], 1.0 - depth * np.hanning(width))
    return x * env


def _breath(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A breath (band-passed noise swelling and fading over 0.15-0.5 s, 20-40 dB under the speech): a
    microphone hears them in the pauses, where the mouth stays at rest."""
    n = int(rng.uniform(0.15, 0.5) * SR)
    if n >= len(x):
        return x
    sos = signal.butter(2, [rng.uniform(300, 800), rng.uniform(2000, 5000)], "bandpass", fs=SR, output="sos")
    puff = signal.sosfilt(sos, rng.standard_normal(n)) * np.hanning(n)
    rms = np.sqrt(np.mean(x**2)) + 1e-9
    puff *= rms * 10 ** (-rng.uniform(20, 40) / 20) / (np.sqrt(np.mean(puff**2)) + 1e-12)
    at = int(rng.integers(len(x) - n))
    y = x.copy()
    y[at : at + n] += puff
    return y


def _colour(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random smooth EQ: a low and a high shelf and one to three bells, each up to 10 dB either way, 15 dB in all.
    Microphones colour speech (a close mic's bass, a laptop's thin mids, a headset's presence peak) and so do
    throats; the festival voices all share a studio's flat colour, so without this a dark voice reads as a hum."""
    f = np.fft.rfftfreq(len(x), 1 / SR)
    octave = np.log2(np.maximum(f, 20.0))
    low, high = rng.uniform(np.log2(100), np.log2(500)), rng.uniform(np.log2(1500), np.log2(6000))
    gain_db = (rng.uniform(-10, 10) / (1 + np.exp(3 * (octave - low)))
               + rng.uniform(-10, 10) / (1 + np.exp(3 * (high - octave))))
    for _ in range(int(rng.integers(1, 4))):
        centre, width = rng.uniform(np.log2(150), np.log2(5000)), rng.uniform(0.3, 1.2)
        gain_db += rng.uniform(-10, 10) * np.exp(-0.5 * ((octave - centre) / width) ** 2)
    return np.fft.irfft(np.fft.rfft(x) * 10 ** (np.clip(gain_db, -15, 15) / 20), len(x))


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
    """Random level dips, a breath, reverb, a microphone's colour, band limit, other source rate, noise (5-30 dB
    SNR, sometimes starting or stopping mid-crop), level (peak -45..+8 dBFS, clipped) and an Opus round-trip at
    16-48 kbit/s after the level (the codec sees what the microphone sent); float32 out."""
    y = x.astype(np.float64)
    if rng.random() < 0.4:
        y = _level_dips(y, rng)
    if rng.random() < 0.3:
        y = _breath(y, rng)
    if rng.random() < 0.3:
        y = _reverb(y, rng)
    if rng.random() < 0.5:
        y = _colour(y, rng)
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
