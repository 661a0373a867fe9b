"""Idle life: the controller's rows stay in range and look alive (blinks, glances), and a seed repeats them."""

from __future__ import annotations

import numpy as np

from s2v.contract import CONTROL_CHANNELS
from s2v.control.idle import IdleConfig, MotionController

GAZE = [CONTROL_CHANNELS.index("gaze_x"), CONTROL_CHANNELS.index("gaze_y")]


def test_glances_are_held_jump_quickly_and_stay_in_reach():
    config = IdleConfig(seed=3)
    rows = MotionController(config).next(np.zeros(25 * 60))  # a silent minute
    gaze = rows[:, GAZE]
    assert (np.abs(gaze) <= [config.gaze_x + 1e-6, config.gaze_y + 1e-6]).all()
    steps = np.linalg.norm(np.diff(gaze, axis=0), axis=1)
    moves = np.flatnonzero(steps > 0.02)
    starts = moves[np.insert(np.diff(moves) > 1, 0, True)]  # first frame of each saccade
    assert 15 <= len(starts) <= 60  # a glance every 1 to 3.5 s
    assert np.mean(steps > 0.02) < 0.25  # mostly held, not drifting
    assert (np.abs(gaze).sum(axis=1) < 0.02).mean() > 0.2  # often back on the viewer


def test_a_seed_repeats_the_same_life():
    a = MotionController(IdleConfig(seed=7)).next(np.zeros(500))
    b = MotionController(IdleConfig(seed=7)).next(np.zeros(500))
    assert np.array_equal(a, b)


def test_the_brows_lift_on_emphasis_and_a_prompt_can_knit_them():
    levels = np.zeros(250)
    levels[100:] = 0.8  # the voice rises sharply at 4 s
    controller = MotionController(IdleConfig(seed=0))
    rows = controller.next(levels)
    brow = rows[:, CONTROL_CHANNELS.index("brow_raise")]
    assert brow[:100].max() == 0.0 and brow[100:130].max() > 0.3 and brow[-50:].max() == 0.0
    controller.set_prompt("a serious, concerned presenter")
    knit = controller.next(np.zeros(100))[:, CONTROL_CHANNELS.index("brow_knit")]
    assert knit[0] < 0.1 < 0.4 < knit[-1]
