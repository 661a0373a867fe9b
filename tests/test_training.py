"""Training from scratch runs end to end on a tiny corpus; the viseme targets say what the mouth must do."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (pip install -e '.[test]')")

from s2v.contract import MOTION_CHANNELS  # noqa: E402
from s2v.motion.network import MotionNet  # noqa: E402
from s2v.motion.visemes import Phone, motion_targets  # noqa: E402
from s2v.training.corpus import CorpusConfig, load_corpus  # noqa: E402
from s2v.training.train import TrainConfig, train  # noqa: E402

CH = {name: i for i, name in enumerate(MOTION_CHANNELS)}


def test_targets_close_the_lips_on_m_and_open_the_jaw_on_aa():
    phones = [Phone("pau", 0.0, 0.3), Phone("m", 0.3, 0.45), Phone("aa", 0.45, 0.65), Phone("p", 0.65, 0.75),
              Phone("uw", 0.75, 0.95), Phone("pau", 0.95, 1.4)]
    t = motion_targets(phones, 35)
    assert t[9, CH["lip_closure"]] > 0.9  # inside /m/ (0.36-0.40 s): lips shut although /m/ is voiced
    assert t[13, CH["jaw_open"]] > 0.6 and t[13, CH["lip_closure"]] < 0.1  # /aa/
    assert t[21, CH["lip_spread"]] < -0.5  # /uw/ rounds
    assert t[17, CH["lip_spread"]] < t[13, CH["lip_spread"]]  # rounding starts before /uw/, across /p/
    assert t[-3:, CH["speech"]].max() < 0.1 and t[-3:, CH["jaw_open"]].max() < 0.1  # rest after speech
    we = motion_targets([Phone("pau", 0.0, 0.3), Phone("w", 0.3, 0.36), Phone("iy", 0.36, 0.6), Phone("pau", 0.6, 1.0)],
                        25)
    assert we[8, CH["lip_spread"]] < -0.3 and we[12, CH["lip_spread"]] > 0.3  # a short /w/ still rounds before /iy/


@pytest.mark.skipif(shutil.which("festival") is None, reason="festival is installed by the README's test command")
def test_train_from_scratch_on_a_tiny_corpus(tmp_path):
    corpus = CorpusConfig(train_voices=("kal_diphone",), eval_voice="cmu_us_slt_arctic_hts", sentences_per_voice=6,
                          eval_sentences=2, sentences_per_process=6, cache_dir=tmp_path / "corpus", recorded_voices=(),
                          kokoro_voices=("kokoro_bf_lily", "kokoro_ef_dora"), kokoro_sentences=2)
    loaded = load_corpus(corpus)
    assert [c.voice for c in loaded.train] == ["kal_diphone"] * 6 + ["kokoro_bf_lily"] * 2 + ["kokoro_ef_dora"] * 2
    for clip in loaded.train:
        assert clip.phones and abs(clip.phones[-1].end - len(clip.audio) / 16000) < 0.1  # timings match the audio
    out = train(TrainConfig(corpus=corpus, epochs=2, steps_per_epoch=3, batch=4, out=tmp_path / "motion.pt"))
    net = MotionNet.load(out)
    motion, state = net(torch.zeros(640 * 5), net.initial_state())
    assert motion.shape == (5, len(MOTION_CHANNELS)) and torch.isfinite(motion).all()
    assert state.shape == (1, net.state_size)
    assert np.isfinite(net.feat_std.numpy()).all()


def test_augmentation_changes_the_sound_not_its_length_and_repeats_with_the_seed():
    from s2v.training.augment import _breath, _level_dips, degrade

    rng = np.random.default_rng(0)
    tone = (0.3 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)).astype(np.float32)
    dipped = _level_dips(tone.astype(np.float64), rng)
    ratio = np.abs(dipped) / np.maximum(np.abs(tone), 1e-9)
    assert len(dipped) == len(tone) and ratio.max() <= 1.0 + 1e-6  # only ever softer
    assert ratio[np.abs(tone) > 0.1].min() < 10 ** (-6 / 20) + 1e-3  # at least one dip of >= 6 dB
    assert np.mean(ratio[np.abs(tone) > 0.1] > 0.999) > 0.7  # most of the sound untouched
    breathy = _breath(np.zeros(16000) + 1e-3, rng)
    assert len(breathy) == 16000 and 0 < np.mean(np.abs(breathy - 1e-3) > 1e-5) < 0.6  # one puff, not all of it
    a, b = degrade(tone, np.random.default_rng(7)), degrade(tone, np.random.default_rng(7))
    assert a.dtype == np.float32 and len(a) == len(tone) and np.array_equal(a, b) and np.abs(a).max() <= 1.0


def test_colour_is_a_smooth_bounded_eq():
    from s2v.training.augment import _colour

    rng = np.random.default_rng(5)
    noise = rng.standard_normal(64000)
    bands = np.geomspace(120, 7000, 25)  # sixth-octave bands

    def band_db(x: np.ndarray) -> np.ndarray:
        power, f = np.abs(np.fft.rfft(x)) ** 2, np.fft.rfftfreq(len(x), 1 / 16000)
        return np.array([10 * np.log10(power[(f >= a) & (f < b)].mean()) for a, b in itertools.pairwise(bands)])

    for _ in range(20):
        gain = band_db(_colour(noise, rng)) - band_db(noise)
        assert np.abs(gain).max() <= 15.5  # bounded, as a microphone's colour is
        assert np.abs(np.diff(gain)).max() < 6  # smooth: no notch or ringing peak
    assert np.ptp(gain) > 2 and len(_colour(noise, rng)) == len(noise)  # it does colour, and keeps the length


def test_loss_weighs_rounded_lips():
    from s2v.training.train import loss_fn

    target = torch.zeros(1, 4, len(MOTION_CHANNELS))
    target[0, 3, CH["lip_spread"]] = -0.8
    mask = torch.ones(1, 4, 1)
    unrounded, unspread = target.clone(), target.clone()
    unrounded[0, 3, CH["lip_spread"]] = 0.0  # a /uw/ shown flat
    unspread[0, 2, CH["lip_spread"]] = 0.8  # the same error on a neutral frame
    plain, rounding = TrainConfig(round_weight=0.0), TrainConfig(round_weight=1.0)
    assert loss_fn(unrounded, target, mask, plain) == pytest.approx(loss_fn(unspread, target, mask, plain))
    assert loss_fn(unrounded, target, mask, rounding) == pytest.approx(2 * loss_fn(unspread, target, mask, rounding))


def test_sustain_holds_one_phone_longer_and_moves_the_rest():
    from s2v.training.augment import sustain

    rng = np.random.default_rng(3)
    t = np.arange(16000) / 16000
    audio = (0.2 * np.sin(2 * np.pi * 150 * t)).astype(np.float32)
    phones = [Phone("pau", 0.0, 0.2), Phone("ah", 0.2, 0.45), Phone("m", 0.45, 0.7), Phone("pau", 0.7, 1.0)]
    out, held = sustain(audio, phones, rng)
    extra = (len(out) - len(audio)) / 16000
    assert 0.15 <= extra <= 0.8 and held[-1].end == pytest.approx(1.0 + extra)
    grown = [q.end - q.start - (p.end - p.start) for p, q in zip(phones, held)]
    assert sorted(grown)[-1] == pytest.approx(extra) and sum(abs(g) > 1e-9 for g in grown) == 1
    assert all(a.end == pytest.approx(b.start) for a, b in zip(held, held[1:]))  # still contiguous
    assert np.abs(np.diff(out)).max() < 3 * np.abs(np.diff(audio)).max()  # spliced without clicks



def test_prompt_transcripts_become_the_words_spoken():
    from s2v.training.prompts import spoken_words

    assert spoken_words("Please press 1 to mute, 42 to lock-in.") == \
        ["please", "press", "one", "to", "mute", "forty", "two", "to", "lock", "in"]
    assert spoken_words("[this is an error beep tone]") is None  # not speech
    assert spoken_words("Dial 323.") is None  # "three two three" or "three hundred twenty-three": unknown


def test_a_held_out_person_cannot_be_trained_on_in_another_language(tmp_path):
    # Allison reads the English and the Spanish prompts: holding out one of them holds out her.
    corpus = CorpusConfig(train_voices=(), recorded_voices=("asterisk_en",), held_out_recorded=("asterisk_es",),
                          cache_dir=tmp_path)
    with pytest.raises(ValueError, match="Allison"):
        load_corpus(corpus)


def test_a_held_out_kokoro_voice_cannot_be_trained_on(tmp_path):
    corpus = CorpusConfig(train_voices=(), recorded_voices=(), kokoro_voices=("kokoro_am_michael",), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="am_michael"):
        load_corpus(corpus)


def test_a_recorded_prompt_aligns_to_its_words():
    from s2v.training import prompts

    voice = prompts.ASTERISK_VOICES["asterisk_en"]
    if not voice.sounds.is_dir():
        pytest.skip(f"the recorded prompts come from Debian: {voice.install}")
    from s2v.training.aligner import Lexicon, align

    pcm = prompts._decode(voice.sounds / "agent-loggedoff.g722")
    phones = align(Lexicon.of("en-us"), prompts.spoken_words("Agent Logged off."), pcm)
    assert [p.name for p in phones if p.name != "pau"] == ["ey", "jh", "ah", "n", "t", "l", "ao", "g", "d", "ao", "f"]
    assert phones[-1].end == pytest.approx(len(pcm) / 16000, abs=0.05)
    assert all(a.end == pytest.approx(b.start) for a, b in itertools.pairwise(phones))


def test_words_of_other_languages_become_phones_the_viseme_table_knows():
    from s2v.motion.visemes import PHONE_VISEMES
    from s2v.training.espeak import Pronouncer
    from s2v.training.prompts import foreign_words

    assert foreign_words("Composez votre numéro d'agent suivi du dièse.") == \
        ["composez", "votre", "numéro", "d'agent", "suivi", "du", "dièse"]
    assert foreign_words("Нажмите 1.") is None and foreign_words("[bip]") is None
    assert Pronouncer("fr")("bonjour") == ["b", "ao", "zh", "uw", "r"]
    assert Pronouncer("fr")("du") == ["d", "uw"]  # French /y/ is rounded
    assert Pronouncer("ru")("мы") == ["m", "ih"]  # Russian /ɨ/ is not
    for language, word in (("es", "ingrese"), ("it", "cancelletto"), ("ru", "решетку")):
        phones = Pronouncer(language)(word)
        assert phones and all(p in PHONE_VISEMES for p in phones), (language, phones)


def test_a_prompt_in_another_language_aligns_through_espeak_phones():
    from s2v.training import prompts

    voice = prompts.ASTERISK_VOICES["asterisk_ru"]
    if not voice.sounds.is_dir():
        pytest.skip(f"the recorded prompts come from Debian: {voice.install}")
    from s2v.training.aligner import Lexicon, align

    pcm = prompts._decode(voice.sounds / "agent-loginok.g722")  # "Оператор зарегистрирован."
    phones = align(Lexicon.of("ru"), ["оператор", "зарегистрирован"], pcm)
    assert [p.name for p in phones][:4] == ["ah", "p", "iy", "r"]
    # The /p/ holds the silent closure of the first word: the quietest 10 ms of "оператор" lie inside it.
    level = np.sqrt(np.convolve(pcm.astype(float) ** 2, np.ones(160) / 160, "same"))[::160]
    first_word_end = next(p.start for p in phones if p.name == "pau")
    quietest = (int(np.argmin(level[5 : int(first_word_end * 100)])) + 5) / 100
    assert phones[1].start <= quietest < phones[1].end
    assert all(a.end == pytest.approx(b.start) for a, b in itertools.pairwise(phones))


def test_prompt_clips_are_aligned_once_and_cached(tmp_path):
    import dataclasses
    import gzip

    from s2v.training import prompts

    voice = prompts.ASTERISK_VOICES["asterisk_en"]
    if not voice.sounds.is_dir():
        pytest.skip(f"the recorded prompts come from Debian: {voice.install}")
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    shutil.copy(voice.sounds / "agent-loggedoff.g722", sounds)
    transcripts = tmp_path / "core-sounds-en.txt.gz"
    with gzip.open(transcripts, "wt") as f:
        f.write("; a comment\nagent-loggedoff: Agent Logged off.\nbeep: [beep]\n")
    voice = dataclasses.replace(voice, sounds=sounds, transcripts=transcripts)
    clips = prompts.prompt_clips(tmp_path / "cache", voice)
    assert [c.text for c in clips] == ["Agent Logged off."]
    assert sorted(p.name for p in sounds.iterdir()) == ["agent-loggedoff.g722"]  # nothing written beside the sounds
    (sounds / "agent-loggedoff.g722").unlink()  # the second call reads the cache only
    again = prompts.prompt_clips(tmp_path / "cache", voice)
    assert [p.name for p in again[0].phones] == [p.name for p in clips[0].phones]
    assert np.abs(again[0].audio - clips[0].audio).max() < 1e-4


def test_alignment_agreement_is_perfect_for_the_same_phones_and_drops_when_they_move():
    from s2v.training.crosscheck import agreement

    phones = [Phone("pau", 0.0, 0.2), Phone("m", 0.2, 0.35), Phone("aa", 0.35, 0.6), Phone("p", 0.6, 0.7),
              Phone("iy", 0.7, 0.9), Phone("pau", 0.9, 1.2)]
    same = agreement([phones], [phones], [1.2])
    assert same["jaw_r"] == pytest.approx(1.0) and same["pbm_closed"] == 1.0 and same["closed_agree"] == 1.0
    late = [Phone(p.name, p.start + 0.08 * (0 < i < 5), p.end + 0.08 * (i < 5)) for i, p in enumerate(phones)]
    moved = agreement([phones], [late], [1.2])
    assert moved["jaw_r"] < 0.95 and moved["closed_agree"] < 0.7
