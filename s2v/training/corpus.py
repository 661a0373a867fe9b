"""Training corpus: reproducible sentences synthesised by festival, flite and espeak-ng, with every phone's timing.

Sentences are random word sequences drawn (fixed seed) from festival's own CMU lexicon, weighted
towards words with the phones whose lip shapes matter most (/p b m/, /f v/, /uw ow w/). The
synthesisers give the audio and the phone segmentation together, so the motion targets come for
free. Festival has three voices; flite adds two more recorded speakers (`rms` US male, `awb` Scottish
male) and its own builds of `slt` and `kal`, and espeak-ng's many voice variants (pitch, formants, Klatt
source) add the speaker variety a handful of recorded voices lack. Kokoro's voices, a neural TTS learned from
people's speech, can be added (s2v.training.kokoro; its held-out voices judge the speech voice agents send). One
festival voice is held out entirely (different voice, different sentences) to measure generalisation. Results
are cached.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import multiprocessing
import re
import subprocess
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import signal
from tqdm import tqdm

from s2v.contract import CONTRACT
from s2v.motion.visemes import Phone
from s2v.training.clips import Clip, load_clips, save_clips
from s2v.training.espeak import ESPEAK, synthesise_espeak
from s2v.training.kokoro import KOKORO, language_of, synthesise_kokoro
from s2v.training.prompts import ASTERISK_VOICES, prompt_clips, prompt_texts

log = logging.getLogger(__name__)

LEXICON = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")
REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTION_WORDS = ("the", "a", "to", "of", "and", "in", "is", "it", "you", "we", "my", "was", "for", "on", "with", "but")
FAVOURED_PHONES = frozenset(("p", "b", "m", "f", "v", "uw", "ow", "w", "sh", "ch"))
FLITE = "flite_"  # prefix of flite voices: flite_rms, flite_awb, ... (libflite_cmu_us_<name>.so)
ESPEAK_VARIANTS = tuple(f"m{i}" for i in range(1, 8)) + tuple(f"f{i}" for i in range(1, 6)) + ("klatt", "klatt2", "klatt3")
_ENTRY = re.compile(r'^\("([a-z]+)" \S+ \((.*)\)\)$')


@dataclass(frozen=True)
class CorpusConfig:
    train_voices: tuple[str, ...] = ("kal_diphone", "cmu_us_slt_arctic_hts", f"{FLITE}rms", f"{FLITE}awb",
                                     f"{FLITE}slt", f"{FLITE}kal16", ESPEAK)
    eval_voice: str = "ked_diphone"
    # Recorded people (s2v.training.prompts); the Russian speaker is held out with the PyPI recordings.
    recorded_voices: tuple[str, ...] = ("asterisk_en", "asterisk_es", "asterisk_fr", "asterisk_it")
    held_out_recorded: tuple[str, ...] = ("asterisk_ru",)
    # Kokoro voices to train on (`kokoro_af_bella`, `kokoro_ef_dora`, ...): none, as their A/B in the model card
    # chose; `kokoro_sentences` each
    kokoro_voices: tuple[str, ...] = ()
    # held out: a voice agent's kind of speech (`s2v eval --tts`), never trained on
    kokoro_eval_voices: tuple[str, ...] = tuple(KOKORO + v for v in ("af_heart", "am_michael", "bf_emma", "bm_george"))
    kokoro_sentences: int = 50  # per Kokoro voice (its synthesis costs ~0.3 s of a core per second of speech)
    recorded_repeat: int = 2  # each recorded prompt enters the training stream this often: real speech counts
    sentences_per_voice: int = 500
    eval_sentences: int = 80
    seed: int = 1234
    sentences_per_process: int = 100
    stretch: tuple[float, float] = (0.8, 1.35)  # festival duration stretch per sentence (speaking rate)
    f0_mean: tuple[float, float] = (80.0, 150.0)  # Hz, diphone voices only (HTS keeps its own F0)
    cache_dir: Path = field(default_factory=lambda: REPO_ROOT / ".cache" / "corpus")


@dataclass
class Corpus:
    train: list[Clip]
    eval: list[Clip]


def lexicon_words(path: Path = LEXICON) -> tuple[list[str], np.ndarray]:
    """Plain lowercase words of 3-10 letters and a sampling weight favouring lip-visible phones."""
    words: dict[str, float] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        m = _ENTRY.match(line)
        if not m or not 3 <= len(m.group(1)) <= 10 or m.group(1) in words:
            continue
        phones = re.findall(r"[a-z]+", m.group(2))
        words[m.group(1)] = 1.0 + 1.5 * sum(p in FAVOURED_PHONES for p in phones)
    names = sorted(words)
    weights = np.array([words[w] for w in names])
    return names, weights / weights.sum()


def make_sentences(count: int, rng: np.random.Generator, words: list[str], p: np.ndarray) -> list[str]:
    """Random word sequences with function words, commas (pauses) and varied sentence ends."""
    out = []
    for _ in range(count):
        tokens: list[str] = []
        for k in range(int(rng.integers(3, 10))):
            if rng.random() < 0.35:
                tokens.append(FUNCTION_WORDS[int(rng.integers(len(FUNCTION_WORDS)))])
            tokens.append(words[int(rng.choice(len(words), p=p))])
            if k > 0 and rng.random() < 0.12:
                tokens[-1] += ","
        text = " ".join(tokens).rstrip(",")
        out.append(text[0].upper() + text[1:] + str(rng.choice([".", ".", "?", "!"])))
    return out


def _voice_setup(voice: str, stretch: float, f0_mean: float, f0_std: float) -> str:
    """Scheme that selects the voice at a speaking rate and, for diphone voices, a pitch.

    HTS voices ignore Duration_Stretch (their engine's -r does it) and festival's F0 targets.
    """
    if voice.endswith("_hts"):
        return (f"(voice_{voice})(set! hts_engine_params (append {voice}::hts_engine_params "
                f"'((\"-r\" {1.0 / stretch:.3f}))))")
    return (f"(voice_{voice})(Parameter.set 'Duration_Stretch {stretch:.3f})"
            f"(set! int_lr_params '((target_f0_mean {f0_mean:.1f}) (target_f0_std {f0_std:.1f}) "
            f"(model_f0_mean 170) (model_f0_std 34)))")


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == CONTRACT.audio.sample_rate and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0


def _read_segs(path: Path) -> list[Phone]:
    """festival's .segs lists each phone's END time; a phone starts where the previous one ended."""
    phones, start = [], 0.0
    for line in path.read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3:
            end = float(parts[0])
            phones.append(Phone(parts[2], start, end))
            start = end
    return phones


def synthesise(voice: str, texts: list[str], prosody: list[tuple[float, float, float]], batch: int) -> list[Clip]:
    """Synthesise with festival, `batch` sentences per process; sentences festival fails on are skipped."""
    clips: list[Clip] = []
    with tempfile.TemporaryDirectory(prefix="s2v-festival-") as tmp:
        d = Path(tmp)
        for b0 in tqdm(range(0, len(texts), batch), desc=f"festival {voice}", unit="batch"):
            lines = []
            for i in range(b0, min(b0 + batch, len(texts))):
                lines.append(
                    f"{_voice_setup(voice, *prosody[i])}\n(unwind-protect (begin "
                    f'(set! utt (Utterance Text "{texts[i]}")) (utt.synth utt) '
                    f"(utt.wave.resample utt {CONTRACT.audio.sample_rate}) "
                    f"(utt.save.wave utt \"{d}/{i}.wav\" 'riff) (utt.save.segs utt \"{d}/{i}.segs\")) nil)"
                )
            script = d / f"batch{b0}.scm"
            script.write_text("\n".join(lines) + "\n")
            subprocess.run(["festival", "-b", str(script)], check=False, capture_output=True, timeout=3600)
            for i in range(b0, min(b0 + batch, len(texts))):
                wav, segs = d / f"{i}.wav", d / f"{i}.segs"
                if not (wav.exists() and segs.exists()):
                    log.warning("festival failed on %s sentence %d: %r", voice, i, texts[i])
                    continue
                clips.append(Clip(voice, texts[i], _read_wav(wav), _read_segs(segs)))
    return clips


class _FliteWave(ctypes.Structure):
    _fields_ = [("type", ctypes.c_char_p), ("sample_rate", ctypes.c_int), ("num_samples", ctypes.c_int),
                ("num_channels", ctypes.c_int), ("samples", ctypes.POINTER(ctypes.c_short))]


def synthesise_flite(voice: str, texts: list[str], stretches: list[float]) -> list[Clip]:
    """Synthesise in-process with libflite (apt `flite`), reading phone end times from the Segment relation."""
    lib = ctypes.CDLL("libflite.so.1")
    name = f"cmu_us_{voice.removeprefix(FLITE)}"
    register = getattr(ctypes.CDLL(f"libflite_{name}.so.1"), f"register_{name}")
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    for fn, res, args in ((register, vp, [cp]), (lib.flite_synth_text, vp, [cp, vp]),
                          (lib.flite_feat_set_float, None, [vp, cp, ctypes.c_float]),
                          (lib.utt_wave, ctypes.POINTER(_FliteWave), [vp]), (lib.utt_relation, vp, [vp, cp]),
                          (lib.relation_head, vp, [vp]), (lib.item_next, vp, [vp]),
                          (lib.item_feat_string, cp, [vp, cp]), (lib.item_feat_float, ctypes.c_float, [vp, cp]),
                          (lib.delete_utterance, None, [vp])):
        fn.restype, fn.argtypes = res, args
    lib.flite_init()
    handle = register(None)
    features = ctypes.cast(handle, ctypes.POINTER(vp))[1]  # cst_voice starts {name, features, ...}
    sr = CONTRACT.audio.sample_rate
    clips: list[Clip] = []
    for text, stretch in tqdm(list(zip(texts, stretches)), desc=f"flite {voice}", unit="sentence"):
        lib.flite_feat_set_float(features, b"duration_stretch", stretch)
        utt = lib.flite_synth_text(text.encode(), handle)
        wav = lib.utt_wave(utt).contents
        audio = np.ctypeslib.as_array(wav.samples, (wav.num_samples,)).astype(np.float32) / 32768.0
        audio = signal.resample_poly(audio, sr, wav.sample_rate).astype(np.float32)
        phones, start, item = [], 0.0, lib.relation_head(lib.utt_relation(utt, b"Segment"))
        while item:
            end = float(lib.item_feat_float(item, b"end"))
            phones.append(Phone(lib.item_feat_string(item, b"name").decode(), start, end))
            start, item = end, lib.item_next(item)
        lib.delete_utterance(utt)
        clips.append(Clip(voice, text, audio, phones))
    return clips


def voice_clips(voice: str, count: int, config: CorpusConfig, purpose: str) -> list[Clip]:
    """Clips of one voice, from the cache when the same sentences were synthesised before."""
    # Each (voice, purpose) draws its own sentences, so held-out sentences differ from training ones.
    key = f"{config.seed}-{voice}-{purpose}"
    rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
    words, p = lexicon_words()
    texts = make_sentences(count, rng, words, p)
    if voice.startswith(KOKORO) and (language := language_of(voice)) != "en-us":
        # another language: the Asterisk prompts' lines in it (real sentences; their readers' audio is unused here)
        lines = prompt_texts(language)
        texts = [lines[i] for i in rng.choice(len(lines), size=min(count, len(lines)), replace=False)]
    prosody = [(float(s), float(f), float(d)) for s, f, d in zip(
        rng.uniform(*config.stretch, size=count), rng.uniform(*config.f0_mean, size=count), rng.uniform(8, 30, size=count))]
    variants = [str(v) for v in rng.choice(ESPEAK_VARIANTS, size=count)]
    digest = hashlib.sha256(json.dumps([voice, texts, prosody, variants]).encode()).hexdigest()[:12]
    path = config.cache_dir / f"{voice}-{purpose}-{count}-{digest}.npz"
    if path.exists():
        return load_clips(path)
    if voice == ESPEAK:
        # espeak's rate is in words per minute (175 is its default); pitch 0-100 (50 default).
        rates = [int(175 / s) for s, _, _ in prosody]
        pitches = [int(np.clip((f - 80) / 70 * 60 + 20, 0, 100)) for _, f, _ in prosody]
        clips = synthesise_espeak(texts, variants, rates, pitches)
    elif voice.startswith(FLITE):
        clips = synthesise_flite(voice, texts, [s for s, _, _ in prosody])
    elif voice.startswith(KOKORO):
        clips = synthesise_kokoro(voice, texts, [1.0 / s for s, _, _ in prosody])
    else:
        clips = synthesise(voice, texts, prosody, config.sentences_per_process)
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    save_clips(path, clips)
    log.info("cached %d %s clips (%.1f min) in %s", len(clips), voice,
             sum(len(c.audio) for c in clips) / CONTRACT.audio.sample_rate / 60, path)
    return clips


def load_corpus(config: CorpusConfig) -> Corpus:
    """Training clips from the synthetic voices and the recorded people (each `recorded_repeat` times),
    evaluation clips from the held-out voice. Held-out people must not be training people, in any language."""
    if config.eval_voice in config.train_voices:
        raise ValueError(f"held-out voice {config.eval_voice} is also a training voice")
    if clash := set(config.kokoro_voices) & set(config.kokoro_eval_voices):
        raise ValueError(f"held-out Kokoro voice {', '.join(sorted(clash))} is also a training voice")
    trained = {ASTERISK_VOICES[v].speaker for v in config.recorded_voices}
    if clash := trained & {ASTERISK_VOICES[v].speaker for v in config.held_out_recorded}:
        raise ValueError(f"held-out speaker {', '.join(sorted(clash))} is also a training speaker")
    train = [c for v in config.train_voices for c in voice_clips(v, config.sentences_per_voice, config, "train")]
    if n := len(config.kokoro_voices):
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:  # two voices at once
            for clips in pool.map(voice_clips, config.kokoro_voices, [config.kokoro_sentences] * n, [config] * n,
                                  ["train"] * n):
                train += clips
    recorded = [c for v in config.recorded_voices for c in prompt_clips(config.cache_dir, ASTERISK_VOICES[v])]
    log.info("recorded people: %d prompts, %.1f min", len(recorded),
             sum(len(c.audio) for c in recorded) / CONTRACT.audio.sample_rate / 60)
    held_out = voice_clips(config.eval_voice, config.eval_sentences, config, "eval")
    return Corpus(train + recorded * config.recorded_repeat, held_out)
