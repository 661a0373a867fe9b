"""Rebuild the README's review images from the shipped graph: `python docs/make_sheets.py`.

Three framings of scikit-image's astronaut (a tight portrait crop, zoomed in to stay inside the photo, the whole
half-body photo, and the photo small on a wide blurred canvas at 720p), the built-in avatar's sheet, the
built-in avatar speaking the recordings of real people `s2v eval --human` marks for a sheet and six prompts of
the held-out Russian speaker, and for each
photo `s2v eval --pixels` measures on (s2v.training.photos) whose renders may be shown, a sheet and a short MP4
of it reading a LibriVox sentence (photos and recordings fetched with pip).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy.io import wavfile
from skimage import data

from s2v.avatar import AvatarConfig, AvatarStore, prepare_avatar
from s2v.render.graph import GraphRenderer
from s2v.offline import render_file
from s2v.review import contact_sheet, render_phone_sheet
from s2v.runtime.model import ExportedModel, ModelConfig
from s2v.training.clips import Clip
from s2v.training.corpus import CorpusConfig
from s2v.training.evaluate import people_clips
from s2v.training.photos import EVAL_PHOTOS
from s2v.training.photos import fetch as fetch_photo
from s2v.training.recordings import HUMAN_RECORDINGS, fetch

DOCS = Path(__file__).resolve().parent


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def wide_canvas(photo: np.ndarray, width: int = 1500, height: int = 1100) -> np.ndarray:
    canvas = cv2.GaussianBlur(cv2.resize(photo, (width, height)), (0, 0), 12)
    h, w = photo.shape[:2]
    y, x = (height - h) // 2, (width - w) // 2
    canvas[y : y + h, x : x + w] = photo
    return canvas


def joined(clips: list[Clip], folder: Path, gap_s: float = 0.4) -> tuple[Path, Path]:
    """`clips` as one WAV with `gap_s` of silence between them, and its phones as `START END PHONE` lines."""
    gap = np.zeros(int(gap_s * 16000), np.float32)
    audio = np.concatenate([part for c in clips for part in (c.audio, gap)])
    lines, t = [], 0.0
    for c in clips:
        lines += [f"{p.start + t:.3f} {p.end + t:.3f} {p.name}" for p in c.phones]
        t += len(c.audio) / 16000 + gap_s
    wav, phones = folder / "joined.wav", folder / "joined.phones"
    wavfile.write(wav, 16000, np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16))
    phones.write_text("\n".join(lines) + "\n")
    return wav, phones


def main() -> None:
    renderer = GraphRenderer()
    photo = data.astronaut()
    framings = {
        "sheet_portrait.png": (photo[0:230, 100:330], AvatarConfig()),
        "sheet_halfbody.png": (photo, AvatarConfig()),
        "sheet_wide.png": (wide_canvas(photo), AvatarConfig(size="720p")),
    }
    for name, (image, config) in framings.items():
        contact_sheet(renderer, prepare_avatar(png(image), config), DOCS / name)
        print("wrote", DOCS / name)
    builtin = AvatarStore.default().builtin()
    contact_sheet(renderer, builtin, DOCS / "contact_sheet.png")
    print("wrote", DOCS / "contact_sheet.png")
    model = ExportedModel(ModelConfig(device="cpu"))
    cache = CorpusConfig().cache_dir.parent
    for recording in (r for r in HUMAN_RECORDINGS if r.sheet):
        wav, phones = fetch(recording, cache)
        out = DOCS / f"phone_sheet_{wav.stem}.png"
        with tempfile.TemporaryDirectory() as tmp:
            render_phone_sheet(model, builtin, wav, phones, Path(tmp) / "talk.mp4", out,
                               title=recording.name.split(":")[0])
        print("wrote", out)
    corpus = CorpusConfig()
    for name, clips in people_clips(corpus).items():
        if "Asterisk" in name:  # the held-out non-English speaker: six prompts spread over her set
            out = DOCS / f"phone_sheet_{name.split()[0].lower()}.png"
            with tempfile.TemporaryDirectory() as tmp:
                wav, phones = joined(clips[:: len(clips) // 6][:6], Path(tmp))
                render_phone_sheet(model, builtin, wav, phones, Path(tmp) / "talk.mp4", out, title=name)
            print("wrote", out)
    reading, _ = fetch(next(r for r in HUMAN_RECORDINGS if r.sheet and "LibriVox" in r.speaker), cache)
    for photo in (p for p in EVAL_PHOTOS if p.shared):  # the others are measured, not shown
        avatar = prepare_avatar(fetch_photo(photo, cache).read_bytes())
        title = f"{photo.name}, {avatar.info['framing']}"
        contact_sheet(renderer, avatar, DOCS / f"sheet_{photo.name}.png", title=title)
        render_file(model, avatar, reading, DOCS / "talk" / f"{photo.name}.mp4", crf=30)
        print("wrote", DOCS / f"sheet_{photo.name}.png", DOCS / "talk" / f"{photo.name}.mp4")


if __name__ == "__main__":
    main()
