"""A clip of speech with its phone timings, the unit of every training and evaluation set, and its cache format."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2v.motion.visemes import Phone


@dataclass
class Clip:
    """One sentence: 16 kHz mono float32 audio and its phones (seconds from the clip start).

    `voice` names the speaker (or synthesiser voice); hold-outs are decided on it.
    """

    voice: str
    text: str
    audio: np.ndarray
    phones: list[Phone]


def save_clips(path: Path, clips: list[Clip]) -> None:
    """Clips as one int16 audio array and a JSON index (text, length, phones): compact and quick to load."""
    audio = np.concatenate([c.audio for c in clips])
    meta = [{"voice": c.voice, "text": c.text, "n": len(c.audio), "phones": [list(p) for p in c.phones]} for c in clips]
    np.savez(path, audio=np.round(audio * 32767).astype(np.int16), meta=json.dumps(meta))


def load_clips(path: Path) -> list[Clip]:
    """The clips `save_clips` wrote, as float32 audio."""
    data = np.load(path)
    audio = data["audio"].astype(np.float32) / 32767.0
    clips, pos = [], 0
    for m in json.loads(str(data["meta"])):
        clips.append(Clip(m["voice"], m["text"], audio[pos : pos + m["n"]], [Phone(*p) for p in m["phones"]]))
        pos += m["n"]
    return clips
