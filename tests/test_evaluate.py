"""The eval metrics measure what they say: closure in p/b/m, shutting far from them, lag, rounding."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="evaluation needs the train extra (pip install -e '.[test]')")

from s2v.contract import MOTION_CHANNELS  # noqa: E402
from s2v.motion.visemes import Phone, motion_targets  # noqa: E402
from s2v.training.evaluate import metrics  # noqa: E402

CH = {name: i for i, name in enumerate(MOTION_CHANNELS)}
PHONES = [Phone("pau", 0.0, 0.4), Phone("m", 0.4, 0.6), Phone("aa", 0.6, 0.9), Phone("uw", 0.9, 1.2),
          Phone("t", 1.2, 1.3), Phone("aa", 1.3, 1.6), Phone("pau", 1.6, 2.4)]


def test_metrics_of_the_targets_themselves_are_perfect():
    ref = motion_targets(PHONES, 60)
    m = metrics([ref], [ref], [PHONES])
    assert m["jaw_r"] == pytest.approx(1.0) and m["spread_r"] == pytest.approx(1.0)
    assert m["closure_pbm"] == 1.0 and m["closure_far"] == 0.0 and m["shut_rounded"] == 0.0
    assert m["lag_frames"] == 0 and m["spread_rounded"] < -0.5


def test_metrics_see_a_late_mouth_a_missed_closure_and_pursed_lips():
    ref = motion_targets(PHONES, 60)
    late = np.roll(ref, 2, axis=0)  # everything two frames late
    assert metrics([late], [ref], [PHONES])["lag_frames"] == 2
    wrong = ref.copy()
    wrong[10:15, CH["lip_closure"]] = 0.0  # /m/ left open
    wrong[22:30, CH["lip_closure"]] = 1.0  # /uw/ shut instead of rounded
    wrong[22:30, CH["lip_spread"]] = 0.0
    m = metrics([wrong], [ref], [PHONES])
    assert m["closure_pbm"] == 0.0 and m["shut_rounded"] == 1.0 and m["closure_far"] > 0.1
    assert m["spread_rounded"] > -0.3
