"""How far the cross-language alignments of s2v.training.prompts can be trusted: `python -m s2v.training.crosscheck`.

pocketsphinx carries only a US English acoustic model, so French, Spanish, Italian and Russian prompts are
aligned with it through espeak-ng's pronunciations mapped onto English phones. Two checks of that, each scored
as the agreement between the motion targets (what training learns from) of two alignments of the same audio:
1. **the pronunciations**: English prompts aligned through espeak-ng's phones against the same prompts aligned
   through pocketsphinx's own dictionary (same recordings, same acoustic model);
2. **the acoustic model on other languages**: espeak-ng speech in each language, whose phone times espeak-ng
   knows exactly, aligned from its text alone;
3. **Kokoro's durations** (s2v.training.kokoro): its English sentences' phone times, read from the durations it
   predicts, against pocketsphinx's alignment of the same audio through the same espeak-ng pronunciations.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from s2v.contract import CONTRACT, MOTION_CHANNELS
from s2v.motion.visemes import BILABIAL_PHONES, Phone, motion_targets
from s2v.training.aligner import ENGLISH, Lexicon, align, decoder
from s2v.training.corpus import lexicon_words, make_sentences
from s2v.training.espeak import synthesise_espeak
from s2v.training.kokoro import KOKORO, synthesise_kokoro
from s2v.training.prompts import ASTERISK_VOICES, _decode, _transcripts, foreign_words, spoken_words

log = logging.getLogger(__name__)

JAW, CLOSURE = MOTION_CHANNELS.index("jaw_open"), MOTION_CHANNELS.index("lip_closure")
FPS = CONTRACT.audio.fps


def agreement(reference: list[list[Phone]], candidate: list[list[Phone]], seconds: list[float]) -> dict[str, float]:
    """Jaw-target r, and how many of the reference's closed p/b/m frames the candidate closes (and vice versa)."""
    ref, cand, pbm = [], [], []
    for r, c, s in zip(reference, candidate, seconds):
        n = int(s * FPS)
        ref.append(motion_targets(r, n))
        cand.append(motion_targets(c, n))
        centres = (np.arange(n) + 0.5) / FPS
        pbm.append(np.array([any(p.start <= t < p.end and p.name in BILABIAL_PHONES for p in r) for t in centres]))
    a, b, m = np.concatenate(ref), np.concatenate(cand), np.concatenate(pbm)
    shut_a, shut_b = a[:, CLOSURE] > 0.5, b[:, CLOSURE] > 0.5
    return {"jaw_r": float(np.corrcoef(a[:, JAW], b[:, JAW])[0, 1]),
            "pbm_closed": float(np.mean(shut_b[m])),
            "closed_agree": float(np.sum(shut_a & shut_b) / max(1, np.sum(shut_a | shut_b))),
            "frames": float(len(a))}


def pronunciations(count: int) -> dict[str, float]:
    """Check 1 on the first `count` English prompts the dictionary aligns."""
    voice = ASTERISK_VOICES["asterisk_en"]
    dictionary, espeak = Lexicon.of(ENGLISH), Lexicon(decoder(), ENGLISH)  # the second spells English by espeak-ng
    ref, cand, seconds = [], [], []
    for key, text in sorted(_transcripts(voice).items()):
        words, sound = spoken_words(text), voice.sounds / f"{key}.g722"
        if words is None or not sound.exists():
            continue
        pcm = _decode(sound)
        try:
            a, b = align(dictionary, words, pcm), align(espeak, words, pcm)
        except (RuntimeError, ValueError):
            continue
        ref.append(a)
        cand.append(b)
        seconds.append(len(pcm) / 16000)
        if len(ref) == count:
            break
    return agreement(ref, cand, seconds)


def _aligned_against_known(clips: list, lexicon: Lexicon, words_of) -> dict[str, float]:
    """Agreement of each synthesised clip's own phone times (the reference) with its alignment from the text."""
    ref, cand, seconds = [], [], []
    for clip in clips:
        pcm = np.round(np.clip(clip.audio, -1, 1) * 32767).astype(np.int16)
        try:
            cand.append(align(lexicon, words_of(clip.text) or [], pcm))
        except (RuntimeError, ValueError):
            continue
        ref.append(clip.phones)
        seconds.append(len(pcm) / 16000)
    return agreement(ref, cand, seconds)


def synthetic(language: str, count: int) -> dict[str, float]:
    """Check 2: espeak-ng speaks `count` prompts of `language` (two voice variants); align them from the text."""
    voice = next(v for v in ASTERISK_VOICES.values() if v.language == language)
    texts = [t for t in _transcripts(voice).values() if foreign_words(t)][:count]
    clips = synthesise_espeak(texts, ["m3", "f2"] * count, [160] * count, [50] * count, language)
    return _aligned_against_known(clips, Lexicon.of(language), foreign_words)


def kokoro(count: int) -> dict[str, float]:
    """Check 3: `count` random corpus sentences, shared among four Kokoro voices (US and UK, women and men),
    aligned through espeak-ng's English pronunciations, as Kokoro was given them."""
    words, p = lexicon_words()
    texts = make_sentences(count, np.random.default_rng(7), words, p)
    names = ("af_heart", "am_michael", "bf_emma", "bm_george")
    clips = [c for k, v in enumerate(names) for c in synthesise_kokoro(
        KOKORO + v, texts[k::4], [1.0] * len(texts[k::4]))]
    return _aligned_against_known(clips, Lexicon(decoder(), ENGLISH), spoken_words)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60, help="prompts per check")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = {"English prompts: espeak-ng's phones vs the dictionary's": pronunciations(args.count)}
    for language in ("es", "fr", "it", "ru"):
        rows[f"espeak-ng {language} speech: aligned vs its own phone times"] = synthetic(language, args.count)
    rows["Kokoro English speech: aligned vs the times of its durations"] = kokoro(args.count)
    print("| check | jaw target r | p/b/m frames closed | closed frames agree (IoU) | frames |\n|---|---|---|---|---|")
    for name, m in rows.items():
        print(f"| {name} | {m['jaw_r']:.3f} | {m['pbm_closed']:.2f} | {m['closed_agree']:.2f} | {m['frames']:.0f} |")


if __name__ == "__main__":
    main()
