"""A fifth recorded person for `s2v eval --asterisk`: the telephone prompts Debian ships for the Asterisk PBX.

`asterisk-core-sounds-en` (transcripts) with `asterisk-core-sounds-en-g722` (16 kHz G.722 audio) hold about 570
prompts read by one US female voice actor, every one transcribed ("Please enter your agent number followed by the
pound key."). Phone timings come from pocketsphinx's forced aligner (its PyPI wheel carries the US English model);
prompts with words outside its dictionary, bracketed non-speech such as "[beep]", or numbers that may be read in
more than one way are skipped: 498 prompts, 17 minutes, ten times the speech of the PyPI recordings. Aligned once
(about 20 s) and cached beside the corpus. Machine alignments at 10 ms are imprecise by a frame or so.
"""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np

from s2v.contract import CONTRACT
from s2v.motion.alignment import phone_name
from s2v.motion.visemes import Phone
from s2v.training.corpus import Clip, load_clips, save_clips

if TYPE_CHECKING:
    from pocketsphinx import Decoder

log = logging.getLogger(__name__)

SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
INSTALL = "apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-g722"
_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
        "seventeen eighteen nineteen".split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number(n: int) -> str:
    if n < 20:
        return _ONES[n]
    return _TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + _ONES[n % 10])


def spoken_words(text: str) -> list[str] | None:
    """The words a transcript line says, lower case, numbers below 100 spelt out; None for non-speech or
    numbers the prompt may read otherwise ("323" as "three two three" or "three hundred twenty three")."""
    if "[" in text:
        return None
    words: list[str] = []
    for token in re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split():
        if token.isdigit():
            if int(token) >= 100:
                return None
            words += _number(int(token)).split()
        elif any(c.isdigit() for c in token):
            return None
        else:
            words.append(token.strip("'"))
    return [w for w in words if w] or None


def _transcripts() -> dict[str, str]:
    out = {}
    with gzip.open(TRANSCRIPTS, "rt", encoding="latin-1") as lines:
        for line in lines:
            if ":" in line and not line.startswith(";"):
                key, text = line.split(":", 1)
                out[key.strip()] = text.strip()
    return out


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path), format="g722") as container:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return pcm.astype(np.int16)


def _align(decoder: Decoder, words: list[str], pcm: np.ndarray) -> list[Phone]:
    """Forced alignment: a first pass places the words, a second (set_alignment) their phones, in 10 ms frames."""
    decoder.set_align_text(" ".join(words))
    for second in (False, True):
        if second:
            decoder.set_alignment()
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
    return [Phone(phone_name(p.name), p.start / 100, (p.start + p.duration) / 100)
            for word in decoder.get_alignment() for p in word]


def prompt_clips(cache: Path) -> list[Clip]:
    """Every alignable prompt as a Clip (16 kHz float32 audio, phones in seconds), in transcript order; aligned on
    the first call and kept in `cache`/asterisk_allison.npz."""
    path = cache / "asterisk_allison.npz"
    if path.exists():
        return load_clips(path)
    if not (SOUNDS.is_dir() and TRANSCRIPTS.exists()):
        raise FileNotFoundError(f"the Asterisk prompts are not installed: {INSTALL}")
    from pocketsphinx import Decoder  # the train extra; serving never aligns

    assert CONTRACT.audio.sample_rate == 16000  # G.722 decodes at 16 kHz, pocketsphinx's model rate
    decoder = Decoder(samprate=16000, bestpath=False, loglevel="FATAL")
    clips: list[Clip] = []
    skipped = 0
    for key, text in sorted(_transcripts().items()):
        words, sound = spoken_words(text), SOUNDS / f"{key}.g722"
        if words is None or not sound.exists():
            skipped += 1
            continue
        pcm = _decode(sound)
        try:  # fails on a word outside the dictionary, or audio the words cannot be fitted to
            phones = _align(decoder, words, pcm)
        except RuntimeError:
            skipped += 1
            continue
        clips.append(Clip("asterisk_allison", text, pcm.astype(np.float32) / 32768.0, phones))
    log.info("Asterisk prompts: %d aligned (%.1f min), %d skipped", len(clips),
             sum(len(c.audio) for c in clips) / 16000 / 60, skipped)
    cache.mkdir(parents=True, exist_ok=True)
    save_clips(path, clips)
    return clips
