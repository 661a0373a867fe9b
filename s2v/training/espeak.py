"""espeak-ng in-process: English training speech with its phone timings, and any language's words as phones.

Two uses. The training corpus synthesises sentences with espeak-ng's many en-us voice variants and reads each
phone's time from its phoneme events. The aligner of recorded speech in other languages (s2v.training.prompts)
asks espeak-ng how a word is pronounced in its language and maps those phonemes onto the festival/CMU phones the
viseme table and pocketsphinx's English acoustic model know: lip shapes are close to universal, so a French /y/
is drawn as a rounded /uw/ and a Russian /ɨ/ as an unrounded /ih/.
"""

from __future__ import annotations

import ctypes
import logging
import re

import numpy as np
from scipy import signal

from s2v.contract import CONTRACT
from s2v.motion.visemes import Phone
from s2v.training.clips import Clip

log = logging.getLogger(__name__)

ESPEAK = "espeak"  # pseudo-voice of the corpus: a random espeak-ng en-us variant per sentence

# espeak-ng phoneme mnemonics -> festival/CMU phones; r-coloured vowels become two phones, None marks a
# zero-width modifier whose time goes to the phone before it. The first block is en-us; the second holds what
# es, fr, it and ru add once stress, length and palatalisation marks are stripped (see `mapped`).
ESPEAK_PHONES: dict[str, tuple[str, ...] | None] = {
    "_": ("pau",), "_:": ("pau",), "_!": ("pau",), "||": ("pau",), ";": None, "%": None,
    "p": ("p",), "b": ("b",), "t": ("t",), "t2": ("t",), "t#": ("dx",), "d": ("d",), "k": ("k",), "g": ("g",),
    "x": ("k",), "?": ("hh",), "m": ("m",), "n": ("n",), "n-": ("en",), "N": ("ng",), "f": ("f",), "v": ("v",),
    "T": ("th",), "D": ("dh",), "s": ("s",), "z": ("z",), "S": ("sh",), "Z": ("zh",), "tS": ("ch",), "dZ": ("jh",),
    "h": ("hh",), "l": ("l",), "@L": ("el",), "r": ("r",), "r-": ("r",), "j": ("y",), "w": ("w",),
    "I": ("ih",), "I2": ("ih",), "I#": ("ih",), "i": ("iy",), "i:": ("iy",), "E": ("eh",), "a": ("ae",), "aa": ("ae",),
    "a#": ("ax",), "@": ("ax",), "@2": ("ax",), "@-": ("ax",), "V": ("ah",), "0": ("aa",), "A:": ("aa",),
    "O:": ("ao",), "O2": ("ao",), "U": ("uh",), "u:": ("uw",), "3": ("er",), "3:": ("er",), "oU": ("ow",),
    "eI": ("ey",), "aI": ("ay",), "aU": ("aw",), "OI": ("oy",), "A@": ("aa", "r"), "O@": ("ao", "r"),
    "o@": ("ao", "r"), "e@": ("eh", "r"), "i@": ("ih", "r"), "i@3": ("iy", "er"), "U@": ("uh", "r"),
    "aI@": ("ay", "er"), "aI3": ("ay", "er"),
    "A": ("aa",), "A~": ("aa",), "O": ("ao",), "O~": ("ao",), "E~": ("eh",), "E#": ("eh",), "e": ("ey",),
    "e-": ("ey",), "o": ("ow",), "u": ("uw",), "u\"": ("uw",), "y": ("uw",), "y-": ("uw",), "Y": ("ow",),
    "W": ("ao",), "W~": ("ao",), "8": ("ow",), "a-": ("aa",), "I^": ("ih",), "oI": ("oy",), "ja": ("y", "aa"),
    "ju": ("y", "uw"), "B": ("b",), "Q": ("g",), "*": ("dx",), "**": ("r",), "R": ("r",), "R2": ("r",),
    "J^": ("y",), "l^": ("l",), "n^": ("n",), "n_": ("n",), "ts": ("t", "s"), "dz": ("d", "z"), "ss": ("s",),
    "d[": ("d",), "w2": ("w",),
}
# Where a language's letter means another sound than en-us gives it.
LANGUAGE_PHONES: dict[str, dict[str, tuple[str, ...]]] = {
    **{lang: {"a": ("aa",), "i": ("iy",)} for lang in ("es", "fr", "it")},
    "ru": {"a": ("aa",), "i": ("iy",), "y": ("ih",)},  # Russian y is an unrounded /ɨ/
}
_MARKS = re.compile(r"^[',]+|[:;|]+$")
STOPS = frozenset(("p", "b", "t", "d", "k", "g", "ch", "jh"))


class _EspeakEventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _EspeakEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EspeakEventId)]


def _claim_stop_closures(phones: list[Phone], audio: np.ndarray, max_s: float = 0.15) -> list[Phone]:
    """espeak's stop events mark the release; give the silent closure before it back to the stop."""
    sr = CONTRACT.audio.sample_rate
    hop = sr // 200
    env = np.sqrt(np.convolve(audio**2, np.ones(hop) / hop, mode="same"))
    quiet = 0.1 * np.percentile(env, 95)
    out = list(phones)
    for i in range(1, len(out)):
        if out[i].name not in STOPS or out[i - 1].name == "pau":
            continue
        t, floor = int(out[i].start * sr), max(int(out[i - 1].start * sr) + 2 * hop, int((out[i].start - max_s) * sr))
        while t - hop >= floor and env[t - hop] < quiet:
            t -= hop
        if t < int(out[i].start * sr):
            out[i - 1] = out[i - 1]._replace(end=t / sr)
            out[i] = out[i]._replace(start=t / sr)
    return out


def synthesise_espeak(texts: list[str], variants: list[str], rates: list[int], pitches: list[int],
                      language: str = "en-us") -> list[Clip]:
    """Synthesise in-process with libespeak-ng, reading phone times from its phoneme events."""
    lib = ctypes.CDLL("libespeak-ng.so.1")
    # Synchronous output, phoneme events on.
    native_sr = lib.espeak_Initialize(2, 0, None, 1)
    chunks: list[np.ndarray] = []
    events: list[tuple[str, int]] = []

    def on_audio(wav: ctypes.Array, n: int, ev: ctypes.Array) -> int:
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while ev[i].type != 0:  # list terminated
            if ev[i].type == 7:  # phoneme
                events.append((ev[i].id.string.decode(), ev[i].sample))
            i += 1
        return 0

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                ctypes.POINTER(_EspeakEvent))(on_audio)
    lib.espeak_SetSynthCallback(callback)
    sr = CONTRACT.audio.sample_rate
    clips: list[Clip] = []
    for text, variant, rate, pitch in zip(texts, variants, rates, pitches):
        lib.espeak_SetVoiceByName(f"{language}+{variant}".encode())
        lib.espeak_SetParameter(1, rate, 0)  # words per minute
        lib.espeak_SetParameter(3, pitch, 0)  # 0-100
        chunks.clear()
        events.clear()
        data = text.encode()
        lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
        native = np.concatenate(chunks).astype(np.float32) / 32768.0
        audio = signal.resample_poly(native, sr, native_sr).astype(np.float32)
        duration = len(audio) / sr
        phones: list[Phone] = []
        for k, (name, sample) in enumerate(events):
            start = sample / native_sr
            end = events[k + 1][1] / native_sr if k + 1 < len(events) else duration
            try:
                phones_of = mapped(name, language)
            except KeyError:
                log.warning("unmapped espeak phoneme %r in %r", name, text)
                phones_of = None
            if phones_of is None:
                if phones:
                    phones[-1] = phones[-1]._replace(end=end)
                continue
            step = (end - start) / len(phones_of)
            phones += [Phone(p, start + j * step, start + (j + 1) * step) for j, p in enumerate(phones_of)]
        name = f"{ESPEAK}:{variant}" if language == "en-us" else f"{ESPEAK}:{language}+{variant}"
        clips.append(Clip(name, text, audio, _claim_stop_closures(phones, audio)))
    return clips


def mapped(name: str, language: str = "en-us") -> tuple[str, ...] | None:
    """The festival/CMU phones of one espeak-ng mnemonic in `language`; stress, length (:) and palatalisation (;)
    marks are dropped. KeyError if espeak-ng names a phoneme the table lacks."""
    for key in (name, _MARKS.sub("", name)):
        if key in LANGUAGE_PHONES.get(language, {}):
            return LANGUAGE_PHONES[language][key]
        if key in ESPEAK_PHONES:
            return ESPEAK_PHONES[key]
    raise KeyError(name)


class PhonemeReader:
    """espeak-ng's phonemes of a text in one language, word by word: by name (the mnemonics the tables above
    know) or in IPA. Language switches espeak-ng makes for loan words ("(en)login(fr)") are dropped, their
    phonemes kept."""

    def __init__(self, language: str) -> None:
        self.lib = ctypes.CDLL("libespeak-ng.so.1")
        self.lib.espeak_Initialize(2, 0, None, 0)
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        if self.lib.espeak_SetVoiceByName(language.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice for {language!r}")

    def words(self, text: str, ipa: bool = False) -> list[list[str]]:
        buffer = ctypes.create_string_buffer(text.encode())
        pointer, words = ctypes.c_void_p(ctypes.addressof(buffer)), []
        while pointer.value:  # one clause per call; a separator between phonemes (bits 8-23) keeps them apart
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(pointer), 1, int(ipa) << 1 | ord("|") << 8).decode()
            words += [w.split("|") for w in re.sub(r"\([a-z-]+\)", " ", out).split()]
        return words


class Pronouncer:
    """Words of one language as festival/CMU phones, by espeak-ng's rules and lexicon for that language."""

    def __init__(self, language: str) -> None:
        self.language = language
        self.reader = PhonemeReader(language)

    def __call__(self, word: str) -> list[str]:
        """Phones of `word`."""
        phones: list[str] = []
        for name in (n for w in self.reader.words(word) for n in w):
            if name.strip("',;"):
                phones += mapped(name, self.language) or ()
        return [p for p in phones if p != "pau"]
