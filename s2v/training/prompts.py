"""Recorded people for training and evaluation: the telephone prompts Debian ships for the Asterisk PBX.

`asterisk-core-sounds-<lang>` (transcripts) with `-<lang>-g722` (16 kHz G.722 audio) hold 530-600 prompts per
language, each read by one voice actor and transcribed ("Please enter your agent number followed by the pound
key."): US English and Mexican Spanish (the same woman), Canadian French (a woman), Italian (a man) and Russian
(a woman). Phone timings come from pocketsphinx's forced aligner and its US English acoustic model, the only
one its wheel carries. English words are looked up in its dictionary; other languages are spelled out by
espeak-ng's pronunciation rules for that language, mapped onto the same phones (s2v.training.espeak): a
cross-language alignment, validated in the model card against alignments made with the dictionary and against
espeak-ng speech whose phone times are known. Prompts with bracketed non-speech ("[beep]"), numbers that may be
read more than one way, or words the aligner cannot fit are skipped. Each voice is aligned once (about 20 s)
and cached beside the corpus. Machine alignments at 10 ms are imprecise by a frame or so.
"""

from __future__ import annotations

import gzip
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from s2v.contract import CONTRACT
from s2v.training.clips import Clip, load_clips, save_clips
from s2v.training.aligner import ENGLISH, Lexicon, align

log = logging.getLogger(__name__)

_SOUNDS = Path("/usr/share/asterisk/sounds")
_DOCS = Path("/usr/share/doc")


@dataclass(frozen=True)
class PromptVoice:
    """One language's prompts: who reads them and where Debian puts them."""

    name: str  # the clips' voice, e.g. "asterisk_fr"
    speaker: str  # the person: one speaker reads two languages, and hold-outs are by person
    sex: str
    language: str  # espeak-ng's voice for the pronunciations; "en-us" uses pocketsphinx's dictionary instead
    sounds: Path
    transcripts: Path

    @property
    def label(self) -> str:
        return f"{self.speaker.removesuffix(' (Asterisk)')} (Asterisk {self.language}, {self.sex})"

    @property
    def install(self) -> str:
        lang = self.transcripts.name.removeprefix("core-sounds-").split(".")[0]
        return f"apt-get install asterisk-core-sounds-{lang} asterisk-core-sounds-{lang}-g722"


def _asterisk(lang: str, folder: str, speaker: str, sex: str, language: str) -> PromptVoice:
    return PromptVoice(f"asterisk_{lang}", speaker, sex, language, _SOUNDS / folder,
                       _DOCS / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz")


ASTERISK_VOICES: dict[str, PromptVoice] = {v.name: v for v in (
    _asterisk("en", "en_US_f_Allison", "Allison (Asterisk)", "female", "en-us"),
    _asterisk("es", "es_MX_f_Allison", "Allison (Asterisk)", "female", "es"),
    _asterisk("fr", "fr_CA_f_June", "June (Asterisk)", "female", "fr"),
    _asterisk("it", "it_IT_m_Carlo", "Carlo (Asterisk)", "male", "it"),
    _asterisk("ru", "ru_RU_f_IvrvoiceRU", "IvrvoiceRU (Asterisk)", "female", "ru"),
)}

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


def foreign_words(text: str) -> list[str] | None:
    """The words of a transcript line in a language other than English, lower case; None for non-speech or
    any digit (numbers are read by rules this module does not know)."""
    if "[" in text or any(c.isdigit() for c in text):
        return None
    return re.findall(r"[^\W\d_]+(?:['’][^\W\d_]+)*", text.lower()) or None


def transcript_words(text: str, language: str) -> list[str] | None:
    """The words a transcript line in `language` says, as the aligner takes them (None: nothing to align)."""
    return spoken_words(text) if language == ENGLISH else foreign_words(text)


def _transcripts(voice: PromptVoice) -> dict[str, str]:
    out = {}
    with gzip.open(voice.transcripts, "rt", encoding="utf-8-sig") as lines:
        for line in lines:
            if ":" in line and not line.startswith(";"):
                key, text = line.split(":", 1)
                out[key.strip()] = text.strip()
    return out


def prompt_texts(language: str) -> list[str]:
    """Every transcript line of the Asterisk prompts in `language` (espeak-ng's name) that says only words."""
    voice = next(v for v in ASTERISK_VOICES.values() if v.language == language)
    return [t for _, t in sorted(_transcripts(voice).items()) if transcript_words(t, language)]


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path), format="g722") as container:
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    return pcm.astype(np.int16)


def prompt_clips(cache: Path, voice: PromptVoice = ASTERISK_VOICES["asterisk_en"]) -> list[Clip]:
    """Every alignable prompt of `voice` as a Clip (16 kHz float32 audio, phones in seconds), in transcript
    order; aligned on the first call and kept in `cache`/<voice>.npz."""
    path = cache / f"{voice.name}.npz"
    if path.exists():
        return load_clips(path)
    if not (voice.sounds.is_dir() and voice.transcripts.exists()):
        raise FileNotFoundError(f"the Asterisk prompts of {voice.name} are not installed: {voice.install}")
    assert CONTRACT.audio.sample_rate == 16000  # G.722 decodes at 16 kHz, pocketsphinx's model rate
    lexicon = Lexicon.of(voice.language)
    clips: list[Clip] = []
    skipped = 0
    for key, text in sorted(_transcripts(voice).items()):
        words, sound = transcript_words(text, voice.language), voice.sounds / f"{key}.g722"
        if words is None or not sound.exists():
            skipped += 1
            continue
        pcm = _decode(sound)
        try:  # fails on a word outside the dictionary, or audio the words cannot be fitted to
            phones = align(lexicon, words, pcm)
        except (RuntimeError, ValueError):
            skipped += 1
            continue
        clips.append(Clip(voice.name, text, pcm.astype(np.float32) / 32768.0, phones))
    log.info("Asterisk prompts of %s: %d aligned (%.1f min), %d skipped", voice.name, len(clips),
             sum(len(c.audio) for c in clips) / 16000 / 60, skipped)
    cache.mkdir(parents=True, exist_ok=True)
    save_clips(path, clips)
    return clips
