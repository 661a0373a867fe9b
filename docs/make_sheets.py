"""Rebuild the README's review images from the shipped graph: `python docs/make_sheets.py`.

Three framings of scikit-image's astronaut (a tight portrait crop whose frame runs past the photo, the whole
half-body photo, and the photo small on a wide blurred canvas at 720p), then the built-in avatar's sheet.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

from s2v.avatar import AvatarConfig, AvatarStore, prepare_avatar
from s2v.render.graph import GraphRenderer
from s2v.review import contact_sheet

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
    contact_sheet(renderer, AvatarStore.default().builtin(), DOCS / "contact_sheet.png")
    print("wrote", DOCS / "contact_sheet.png")


if __name__ == "__main__":
    main()
