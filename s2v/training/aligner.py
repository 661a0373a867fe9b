"""Forced alignment of recorded speech to its words, in any language espeak-ng speaks: phones with their times.

pocketsphinx's wheel carries one acoustic model, US English. English words are looked up in its dictionary;
words of another language are spelled out by espeak-ng's rules for that language (s2v.training.espeak), mapped
onto the same phones and added to the dictionary. Lip shapes are close to universal, and so are the acoustic
landmarks the aligner needs (closures, bursts, vowel onsets); `python -m s2v.training.crosscheck` measures how
close this comes to a known alignment. A first pass places the words, a second their phones, in 10 ms frames.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from s2v.motion.alignment import phone_name
from s2v.motion.visemes import Phone
from s2v.training.espeak import Pronouncer

if TYPE_CHECKING:
    from pocketsphinx import Decoder

# festival phones that pocketsphinx's acoustic model names otherwise
_SPHINX = {"ax": "AH", "dx": "D", "el": "L", "en": "N"}


def decoder() -> Decoder:
    """pocketsphinx's aligner at 16 kHz, its model's rate (the train extra; serving never aligns)."""
    from pocketsphinx import Decoder

    return Decoder(samprate=16000, bestpath=False, loglevel="FATAL")


ENGLISH = "en-us"  # the acoustic model's language: its own dictionary, not espeak-ng's rules


class Lexicon:
    """The words of one language as the decoder's dictionary knows them: English as they are, other languages
    added under ASCII keys with espeak-ng's phones (`language` None: pocketsphinx's own English dictionary)."""

    def __init__(self, decoder: Decoder, language: str | None = None) -> None:
        self.decoder, self.keys = decoder, {}
        self.pronounce = None if language is None else Pronouncer(language)
        self.prefix = re.sub(r"\W", "", language or "")

    def __call__(self, words: list[str]) -> list[str]:
        if self.pronounce is None:
            return words
        out = []
        for word in words:
            if word not in self.keys:
                phones = " ".join(_SPHINX.get(p, p.upper()) for p in self.pronounce(word))
                if not phones:
                    raise ValueError(f"espeak-ng gives no phones for {word!r}")
                self.keys[word] = f"{self.prefix}_{len(self.keys)}"
                self.decoder.add_word(self.keys[word], phones, True)
            out.append(self.keys[word])
        return out

    @classmethod
    def of(cls, language: str) -> Lexicon:
        """A new decoder's lexicon for `language`: pocketsphinx's dictionary for English, espeak-ng otherwise."""
        return cls(decoder(), None if language == ENGLISH else language)


def align(lexicon: Lexicon, words: list[str], pcm: np.ndarray) -> list[Phone]:
    """Phones of `words` spoken in 16 kHz int16 `pcm`, in seconds. RuntimeError where they cannot be fitted,
    ValueError or RuntimeError on a word the dictionary or espeak-ng does not know."""
    d = lexicon.decoder
    d.set_align_text(" ".join(lexicon(words)))
    for second in (False, True):
        if second:
            d.set_alignment()
        d.start_utt()
        d.process_raw(pcm.astype(np.int16).tobytes(), full_utt=True)
        d.end_utt()
    return [Phone(phone_name(p.name), p.start / 100, (p.start + p.duration) / 100)
            for word in d.get_alignment() for p in word]
