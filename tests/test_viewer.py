"""The pixel evaluation sees what a viewer sees: openings read back from rendered frames, and metrics that tell a
mouth that follows the phones from one that is late, shut or still."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from s2v.motion.visemes import Phone, motion_targets
from s2v.render.graph import GraphRenderer, pose
from s2v.training.viewer import CLOSED_BELOW, OPEN_ABOVE, FaceReader, Watched, mouth_open, score

CACHE = Path(__file__).resolve().parents[1] / ".cache"
PHONES = [Phone("pau", 0.0, 0.4), Phone("m", 0.4, 0.6), Phone("aa", 0.6, 0.9), Phone("uw", 0.9, 1.2),
          Phone("t", 1.2, 1.3), Phone("aa", 1.3, 1.6), Phone("b", 1.6, 1.7), Phone("eh", 1.7, 2.0),
          Phone("pau", 2.0, 2.4)]
N = 60


def watched(opening: np.ndarray, width: np.ndarray | None = None) -> Watched:
    """A clip whose measured opening is `opening`, shown by a model whose own output is the phones' targets."""
    ref = mouth_open(motion_targets(PHONES, N))
    nan = np.full(N, np.nan)
    return Watched(opening, nan if width is None else width, nan, opening, ref, PHONES)


def test_a_mouth_that_follows_the_phones_scores_perfectly():
    ref = mouth_open(motion_targets(PHONES, N))
    m = score([watched(0.4 * ref)], 25)  # any scale: openings are in eye distances, targets in [0, 1]
    assert m["visible_vs_speech_r"] == pytest.approx(1.0) and m["visible_vs_model_r"] == pytest.approx(1.0)
    assert m["lag_frames"] == 0 and m["pbm_closed"] == 1.0 and m["open_vowels_open"] == 1.0
    assert np.isnan(m["rounded_width"])  # no width was measured


def test_rounding_is_seen_as_a_narrower_mouth():
    ref = mouth_open(motion_targets(PHONES, N))
    width = np.ones(N)
    width[23:29] = 0.8  # the core of /uw/ (0.9-1.2 s)
    assert score([watched(0.4 * ref, width)], 25)["rounded_width"] == pytest.approx(0.8)
    assert score([watched(0.4 * ref, np.ones(N))], 25)["rounded_width"] == pytest.approx(1.0)


def test_late_shut_and_timid_mouths_are_told_apart():
    ref = mouth_open(motion_targets(PHONES, N))
    assert score([watched(np.roll(0.4 * ref, 2))], 25)["lag_frames"] == 2
    shut = 0.4 * ref
    shut[15:23] = 0.0  # the first /aa/ held shut
    assert score([watched(shut)], 25)["open_vowels_open"] < 0.75  # a third of the core vowel frames
    timid = np.maximum(0.1 * ref, CLOSED_BELOW + 0.01)  # never opens far, never quite closes
    m = score([watched(timid)], 25)
    assert m["open_vowels_open"] == 0.0 and m["pbm_closed"] == 0.0
    assert OPEN_ABOVE > CLOSED_BELOW


@pytest.fixture(scope="module")
def frames(model, avatar) -> np.ndarray:
    rows = [pose(jaw_open=j, speech=1.0) for j in (0.0, 0.3, 0.6, 1.0)] + [pose(lip_closure=1.0, speech=1.0)]
    motion, controls = (np.stack(r) for r in zip(*rows))
    return GraphRenderer(model.config.model).frames(avatar, motion, controls)


def test_both_detectors_read_the_opening_grow_with_the_jaw(avatar, frames):
    reader = FaceReader(avatar.background, CACHE)
    readings = [reader.read(f, identity=True) for f in frames]
    dlib = np.array([r.opening for r in readings[:4]])
    mesh = np.array([r.mesh_opening for r in readings[:4]])
    assert (np.diff(dlib) > 0).all() and (np.diff(mesh) > 0).all(), (dlib, mesh)
    assert dlib[-1] > 0.3, dlib  # a full /aa/ parts the lips by a third of the eye distance
    assert readings[4].opening < CLOSED_BELOW  # the smiling photo's lips, closed at preparation, read as shut
    assert max(r.identity for r in readings) < 0.6  # dlib's "same person"


def test_an_evaluation_photo_is_fetched_once_and_becomes_an_avatar(tmp_path):
    from s2v.avatar import prepare_avatar
    from s2v.training.photos import EVAL_PHOTOS, fetch

    coelho = next(p for p in EVAL_PHOTOS if p.name == "coelho")  # the smallest archive, and a turned head
    path = fetch(coelho, tmp_path)
    assert path == fetch(coelho, tmp_path) and path.stat().st_size > 10_000
    assert prepare_avatar(path.read_bytes()).info["faces_found"] == 1
