"""Read any audio file (WAV, MP3, Opus, ...) as mono float PCM at a chosen rate, through PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def read_audio(path: str | Path, rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream, mixed to mono float32 in [-1, 1] at `rate` Hz."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot read audio from {path}: {exc}") from exc
    with container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return np.zeros(0, np.float32)
    return np.clip(np.concatenate(chunks).astype(np.float32), -1.0, 1.0)


def write_wav(path: str | Path, pcm: np.ndarray, rate: int = 16000) -> None:
    """Mono float PCM to a 16-bit WAV (used by tests and tools that hand audio to other programs)."""
    import wave

    data = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data)
