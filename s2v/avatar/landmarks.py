"""Face detection and 68-point landmarks with dlib's HOG detector and shape predictor.

The models ship inside the `face_recognition_models` wheel. Its `__init__` imports `pkg_resources`, which
recent setuptools no longer has, so the model files are located without importing the package.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DETECT_MAX_SIDE = 1280  # HOG cost grows with pixels; faces that matter are well above its 40-80 px minimum here
MIN_SCORE = 0.3  # HOG margin: real faces score ~1 here; patterns like the astronaut's suit badge score under 0.2
DLIB_LOCK = threading.Lock()  # dlib objects are not documented as thread-safe: hold it around every call


@dataclass(frozen=True)
class Face:
    """One detected face: its box and 68 landmarks, in the coordinates of the image given to `find_faces`."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float
    points: np.ndarray  # [68, 2] float32 (x, y)

    @property
    def width(self) -> float:
        """Ear-to-ear landmark span: steadier than the detector's box, whose sizes come in pyramid steps."""
        return float(np.linalg.norm(self.points[16] - self.points[0]))


def model_path(name: str) -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed (pip install face-recognition-models)")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / name


@lru_cache(maxsize=1)
def dlib_models():  # type: ignore[no-untyped-def]
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))
    return detector, predictor


def find_faces(rgb: np.ndarray) -> list[Face]:
    """All frontal faces in an RGB uint8 image, largest first.

    Detection runs on a copy no larger than DETECT_MAX_SIDE and upsamples once only when the first pass finds
    nothing; landmarks are predicted on the full image so they keep its precision.
    """
    import dlib

    detector, predictor = dlib_models()
    h, w = rgb.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
    small = rgb
    if scale < 1.0:
        import cv2

        small = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    small = np.ascontiguousarray(small)
    with DLIB_LOCK:
        rects, scores, _ = detector.run(small, 0, MIN_SCORE)
        if not rects:
            rects, scores, _ = detector.run(small, 1, MIN_SCORE)
        faces = []
        for rect, score in zip(rects, scores):
            box = (rect.left() / scale, rect.top() / scale, rect.right() / scale, rect.bottom() / scale)
            full = dlib.rectangle(*(int(round(v)) for v in box))
            shape = predictor(np.ascontiguousarray(rgb), full)
            pts = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
            faces.append(Face(box, float(score), pts))
    faces.sort(key=lambda f: f.width, reverse=True)
    log.debug("found %d face(s): %s", len(faces), [round(f.width) for f in faces])
    return faces
