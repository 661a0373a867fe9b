"""Lip-sync as a viewer sees it: measured from the pixels of rendered video, not from the motion channels.

A recording is spoken by a photo through the streaming generator (the server's path), and every frame is looked
at again with two landmark detectors: dlib's 68 points, found afresh in each frame (the rig reads the photo's
landmarks once; it never sees the frames), and MediaPipe's FaceMesh, another network with other habits, as a
second opinion. From the points come the inner-lip opening and the mouth width, both in units of the distance
between the eye centres, so faces of any size compare. Those curves are scored against
what the phones say the mouth does (`motion_targets`) and against the model's own mouth output on the same
frames, which says whether the picture shows the motion at all. dlib's face-recognition embedding of each frame
against the photo says whether the person is still the same person (under 0.6 is dlib's "same person").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2v.avatar import Avatar, AvatarConfig, prepare_avatar
from s2v.avatar.landmarks import DLIB_LOCK, dlib_models, model_path
from s2v.contract import MOTION_CHANNELS
from s2v.control.idle import IdleConfig
from s2v.motion.visemes import BILABIAL_PHONES, OPEN_VOWELS, ROUNDED_PHONES, SILENCE_PHONES, Phone, motion_targets
from s2v.runtime.generator import AvatarFrame, StreamingGenerator
from s2v.runtime.model import ExportedModel
from s2v.training.clips import Clip
from s2v.training.facemesh import INNER_LIP_PAIRS, LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS, FaceMesh

log = logging.getLogger(__name__)

JAW, CLOSURE, TUCK = (MOTION_CHANNELS.index(c) for c in ("jaw_open", "lip_closure", "lip_tuck"))
CLOSED_BELOW = 0.04  # inner-lip gap / eye distance: lips that touch (dlib's inner points rarely meet exactly)
OPEN_ABOVE = 0.10  # ... a gap a viewer reads as an open mouth (a natural /aa/ is about 0.3)
IDENTITY_EVERY = 5  # frames between identity checks (the embedding costs more than the landmarks)
MAX_LAG = 5


def mouth_open(motion: np.ndarray) -> np.ndarray:
    """How far the motion channels part the lips [n]: the jaw, less what closure or a lip tuck holds shut."""
    m = np.atleast_2d(motion)
    return np.clip(m[:, JAW], 0, 1) * (1 - np.clip(m[:, CLOSURE] + m[:, TUCK], 0, 1))


@dataclass
class FaceReading:
    opening: float  # dlib: inner-lip gap / eye distance; NaN when no face was found
    width: float  # dlib: mouth corner to corner / eye distance
    identity: float  # embedding distance to the photo; NaN when not checked on this frame
    mesh_opening: float  # FaceMesh: inner-lip gap / eye distance, a second opinion; NaN when no face was found


class FaceReader:
    """dlib's detector, 68 points and face embedding on video frames, searching near the last face found, and
    FaceMesh's 468 points as a second detector with other habits."""

    def __init__(self, photo: np.ndarray, cache: Path) -> None:
        import dlib

        self._dlib = dlib
        self._mesh = FaceMesh(cache)
        self._encoder = dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))
        self._box: tuple[int, int, int, int] | None = None
        first = self._points(photo, detect_whole=True)
        if first is None:
            raise ValueError("no face found in the photo")
        self.reference = self._embed(photo, first)
        self._box = None

    def read(self, rgb: np.ndarray, identity: bool) -> FaceReading:
        mesh = _mesh_opening(self._mesh.detect(rgb))
        shape = self._points(rgb)
        if shape is None:
            return FaceReading(float("nan"), float("nan"), float("nan"), mesh)
        p = np.array([(q.x, q.y) for q in shape.parts()], np.float64)
        eyes = float(np.linalg.norm(p[42:48].mean(0) - p[36:42].mean(0)))
        gap = float(np.mean([np.linalg.norm(p[a] - p[b]) for a, b in ((61, 67), (62, 66), (63, 65))]))
        dist = float(np.linalg.norm(self._embed(rgb, shape) - self.reference)) if identity else float("nan")
        return FaceReading(gap / eyes, float(np.linalg.norm(p[54] - p[48])) / eyes, dist, mesh)

    def reset(self) -> None:
        """Before another video: search the whole first frame."""
        self._box = None
        self._mesh.reset()

    def _points(self, rgb: np.ndarray, detect_whole: bool = False):  # -> dlib.full_object_detection | None
        detector, predictor = dlib_models()
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = (0, 0, w, h) if detect_whole or self._box is None else _around(self._box, w, h)
        with DLIB_LOCK:
            rects, _, _ = detector.run(np.ascontiguousarray(rgb[y0:y1, x0:x1]), 1 if detect_whole else 0, 0.0)
            if rects:
                r = max(rects, key=lambda r: r.area())
                self._box = (r.left() + x0, r.top() + y0, r.right() + x0, r.bottom() + y0)
            if self._box is None:
                return None
            return predictor(np.ascontiguousarray(rgb), self._dlib.rectangle(*self._box))

    def _embed(self, rgb: np.ndarray, shape) -> np.ndarray:
        with DLIB_LOCK:
            return np.array(self._encoder.compute_face_descriptor(np.ascontiguousarray(rgb), shape))


def _around(box: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    """The last face's box grown by half its size on each side, inside the frame: where to look next."""
    x0, y0, x1, y1 = box
    m = (x1 - x0) // 2
    return max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, w), min(y1 + m, h)


def _mesh_opening(points: np.ndarray | None) -> float:
    """Mean gap of FaceMesh's centre inner-lip pairs over the distance between its eye centres."""
    if points is None:
        return float("nan")
    p = points[:, :2].astype(np.float64)
    eyes = np.linalg.norm(p[list(LEFT_EYE_CORNERS)].mean(0) - p[list(RIGHT_EYE_CORNERS)].mean(0))
    return float(np.mean([np.linalg.norm(p[a] - p[b]) for a, b in INNER_LIP_PAIRS]) / eyes)


def render_frames(model: ExportedModel, avatar: Avatar, pcm16k: np.ndarray, batch: int = 8) -> Iterator[AvatarFrame]:
    """Every frame of `pcm16k` spoken by `avatar`, through the streaming generator (idle motion seed 0)."""
    generator = StreamingGenerator(model, avatar, idle=IdleConfig(seed=0), max_batch=batch)
    generator.push_audio(pcm16k)
    yield from generator.frames()
    yield from generator.flush()


@dataclass
class Watched:
    """One clip as the viewer saw it: per frame, the measured face and the model's own mouth output."""

    opening: np.ndarray
    width: np.ndarray
    identity: np.ndarray
    mesh_opening: np.ndarray
    model_open: np.ndarray
    phones: list[Phone]


def watch(model: ExportedModel, avatar: Avatar, reader: FaceReader, pcm16k: np.ndarray, phones: list[Phone]) -> Watched:
    """Render a clip and read every frame back."""
    readings, motion = [], []
    reader.reset()
    for frame in render_frames(model, avatar, pcm16k):
        readings.append(reader.read(frame.image, identity=frame.index % IDENTITY_EVERY == 0))
        motion.append(frame.motion)
    return Watched(
        np.array([r.opening for r in readings]),
        np.array([r.width for r in readings]),
        np.array([r.identity for r in readings]),
        np.array([r.mesh_opening for r in readings]),
        mouth_open(np.stack(motion)),
        phones,
    )


def _frame_names(phones: list[Phone], n: int, fps: int) -> tuple[np.ndarray, np.ndarray]:
    """The phone under each frame's centre, and whether the frame is in the phone's core: its middle half, or
    the one frame at its midpoint (the lips are still on their way at a vowel's edges, e.g. out of a /b/)."""
    centres = (np.arange(n) + 0.5) / fps
    names = np.full(n, "pau", dtype=object)
    core = np.zeros(n, bool)
    for p in phones:
        names[(centres >= p.start) & (centres < p.end)] = p.name
        quarter = (p.end - p.start) / 4
        core[(centres >= p.start + quarter) & (centres < p.end - quarter)] = True
        core[min(int((p.start + p.end) / 2 * fps), n - 1)] = True
    return names, core


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) < 1e-9 or np.std(b[ok]) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def score(clips: list[Watched], fps: int) -> dict[str, float]:
    """Pooled pixel metrics over clips of one photo and one speaker.

    visible_vs_model_r: does the picture show the model's mouth output; visible_vs_speech_r (over speech frames)
    and _whole_r (whole clips): does it follow the phones; lag: the shift of the visible opening that best
    follows the phones (positive: late); pbm_closed: fraction of p/b/m frames, open_vowels_open: of the frames
    in the core of open vowels; rounded_width: the mouth's width in the core of /uw w ow/ over its width in the
    other speech frames (under 1 is narrower);
    silence_opening_sd: movement in silence; identity_worst: the largest embedding distance to the photo."""
    seen, model_open, ref, names, cores, ids = [], [], [], [], [], []
    for c in clips:
        targets = motion_targets(c.phones, len(c.opening))
        seen.append(c.opening)
        model_open.append(c.model_open)
        ref.append(mouth_open(targets))
        frame_names, core = _frame_names(c.phones, len(c.opening), fps)
        names.append(frame_names)
        cores.append(core)
        ids.append(c.identity)
    o, m, r, nm, inner = (np.concatenate(x) for x in (seen, model_open, ref, names, cores))
    speech = np.array([n not in SILENCE_PHONES for n in nm])
    pbm = np.array([n in BILABIAL_PHONES for n in nm])
    vowels = np.array([n in OPEN_VOWELS for n in nm]) & inner
    rounded = np.array([n in ROUNDED_PHONES for n in nm]) & inner
    width = np.concatenate([c.width for c in clips])
    lags = range(-MAX_LAG, MAX_LAG + 1)
    lag_r = [_corr(np.concatenate([s[max(k, 0) : len(s) + min(k, 0)] for s in seen]),
                   np.concatenate([q[max(-k, 0) : len(q) + min(-k, 0)] for q in ref])) for k in lags]
    found = np.isfinite(o)
    return {
        "frames": int(len(o)),
        "face_found": float(found.mean()),
        "visible_vs_model_r": _corr(o, m),
        "mesh_visible_vs_model_r": _corr(np.concatenate([c.mesh_opening for c in clips]), m),
        "visible_vs_speech_r": _corr(o[speech], r[speech]),
        "visible_vs_speech_whole_r": _corr(o, r),
        "model_vs_speech_r": _corr(m[speech], r[speech]),
        "lag_frames": float(list(lags)[int(np.nanargmax(lag_r))]) if np.isfinite(lag_r).any() else float("nan"),
        "pbm_closed": float(np.mean(o[pbm & found] < CLOSED_BELOW)) if (pbm & found).any() else float("nan"),
        "open_vowels_open": float(np.mean(o[vowels & found] > OPEN_ABOVE)) if (vowels & found).any() else float("nan"),
        "opening_p95": float(np.nanpercentile(o, 95)),
        # rounding as seen: the mouth's width in the core of /uw w ow/ over its width in the other speech frames
        "rounded_width": float(np.nanmedian(width[rounded]) / np.nanmedian(width[speech & ~rounded]))
        if np.isfinite(width[rounded]).any() else float("nan"),
        "silence_opening_sd": float(np.nanstd(o[~speech])),
        "identity_worst": float(np.nanmax(np.concatenate(ids))) if np.isfinite(np.concatenate(ids)).any()
        else float("nan"),
    }


PAD_S = 0.5  # silence either side of each clip: the mouth must rest there too


def evaluate_pixels(model: ExportedModel, photos: dict[str, bytes], speakers: dict[str, list[Clip]], cache: Path
                    ) -> dict[str, dict[str, dict[str, float]]]:
    """Pixel metrics per photo and speaker (clips padded with silence), logged as one line each. Identity is
    judged against the photo as it came, framed as the avatar frames it but with nothing changed (a mouth closed
    at preparation counts against it)."""
    results: dict[str, dict[str, dict[str, float]]] = {}
    for photo, data in photos.items():
        avatar = prepare_avatar(data)
        reader = FaceReader(prepare_avatar(data, AvatarConfig(close_mouth=False)).background, cache)
        for speaker, clips in speakers.items():
            watched = [watch(model, avatar, reader, *_padded(c, model.contract.audio.sample_rate)) for c in clips]
            m = score(watched, model.contract.audio.fps)
            results.setdefault(photo, {})[speaker] = m
            log.info("%s x %s: visible vs model r %.2f (FaceMesh %.2f), vs speech r %.2f (whole %.2f, model's own "
                     "%.2f), lag %+d, p/b/m closed %.2f, open vowels open %.2f, p95 opening %.2f, identity worst %.2f",
                     photo, speaker, m["visible_vs_model_r"], m["mesh_visible_vs_model_r"], m["visible_vs_speech_r"],
                     m["visible_vs_speech_whole_r"], m["model_vs_speech_r"], int(m["lag_frames"]), m["pbm_closed"],
                     m["open_vowels_open"], m["opening_p95"], m["identity_worst"])
    return results


def _padded(clip: Clip, rate: int) -> tuple[np.ndarray, list[Phone]]:
    pad = np.zeros(int(PAD_S * rate), np.float32)
    return np.concatenate([pad, clip.audio, pad]), [Phone(p.name, p.start + PAD_S, p.end + PAD_S) for p in clip.phones]


TABLE_COLUMNS = {  # metric: column heading
    "visible_vs_model_r": "shows model r",
    "mesh_visible_vs_model_r": "(FaceMesh)",
    "visible_vs_speech_r": "vs speech r",
    "visible_vs_speech_whole_r": "(whole)",
    "model_vs_speech_r": "model's own r",
    "lag_frames": "lag",
    "pbm_closed": "p/b/m shut",
    "open_vowels_open": "vowels open",
    "opening_p95": "p95 open",
    "rounded_width": "/uw w ow/ width",
    "identity_worst": "identity worst",
}


def pixel_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table of evaluate_pixels' results, a row per photo and speaker."""
    lines = ["| photo | speaker | " + " | ".join(TABLE_COLUMNS.values()) + " |",
             "|---|---|" + "---|" * len(TABLE_COLUMNS)]
    for photo, speakers in results.items():
        for speaker, m in speakers.items():
            lines.append(f"| {photo} | {speaker} | " + " | ".join(f"{m[k]:.2f}" for k in TABLE_COLUMNS) + " |")
    return "\n".join(lines)
