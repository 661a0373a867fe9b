"""The shipped ONNX graph is what `s2v export` makes from the shipped checkpoint, and agrees with torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="export checks need the train extra (pip install -e '.[test]')")

from s2v.contract import INPUT_NAMES  # noqa: E402
from s2v.export import DEFAULT_CHECKPOINT, ExportConfig, build_graph, compare_with_torch, example_inputs, export_graph  # noqa: E402
from s2v.motion.network import MotionNet  # noqa: E402
from s2v.runtime.model import DEFAULT_MODEL, ExportedModel, ModelConfig  # noqa: E402


@pytest.mark.parametrize("frames", [1, 6])
def test_onnx_runtime_agrees_with_torch(avatar, frames):
    diffs = compare_with_torch(DEFAULT_MODEL, DEFAULT_CHECKPOINT, avatar, frames)
    assert diffs["motion"] < 1e-4
    assert diffs["new_state"] < 1e-4
    assert diffs["frames"] <= 1  # uint8 pixels: at most one rounding step apart


def test_shipped_graph_is_what_export_produces(avatar, tmp_path):
    fresh = export_graph(ExportConfig(checkpoint=DEFAULT_CHECKPOINT, output=tmp_path / "s2v.onnx"), avatar)
    inputs = example_inputs(build_graph(DEFAULT_CHECKPOINT), avatar, frames=4, seed=7)
    feeds = dict(zip(INPUT_NAMES, (t.numpy() for t in inputs)))
    shipped = ExportedModel(ModelConfig(model=DEFAULT_MODEL, device="cpu")).session.run(None, feeds)
    rebuilt = ExportedModel(ModelConfig(model=fresh, device="cpu")).session.run(None, feeds)
    for a, b in zip(shipped, rebuilt):
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), atol=1e-5)


def test_motion_network_streams_like_one_pass(speech_16k):
    net = MotionNet.load(DEFAULT_CHECKPOINT).eval()
    step = 640
    audio = torch.from_numpy(speech_16k[: (len(speech_16k) // step) * step].copy())
    with torch.no_grad():
        whole, _ = net(audio, torch.zeros(1, net.state_size))
        for chunk in (1, 2, 3, 7):
            state, rows = torch.zeros(1, net.state_size), []
            for start in range(0, len(audio), chunk * step):
                out, state = net(audio[start : start + chunk * step], state)
                rows.append(out)
            assert (torch.cat(rows) - whole).abs().max().item() < 1e-3, chunk


def test_stream_normalisation_takes_a_microphones_colour_out(speech_16k):
    from scipy import signal

    from s2v.motion.network import MotionNetConfig

    net = MotionNet(MotionNetConfig(stream_norm=True)).eval()
    plain = torch.from_numpy(speech_16k[: (len(speech_16k) // 640) * 640].copy())
    b, a = signal.butter(1, 1000, "highpass", fs=16000)  # a thin laptop microphone: -12 dB at 250 Hz
    thin = torch.from_numpy(signal.lfilter(b, a, plain.numpy()).astype(np.float32) * 2)
    with torch.no_grad():
        n = net.config
        raw = [net.mel(torch.zeros(1, 240), x[None])[0] for x in (plain, thin)]
        net.set_normalisation(raw[0].mean(dim=(0, 2)).repeat(4), torch.ones(160))
        normed = [net._stream_norm(m, torch.zeros(1, raw[0].shape[1] + 1))[0] for m in raw]
    late = slice(raw[0].shape[2] // 2, None)  # once a second or more of speech has been heard
    before = (raw[1] - raw[0])[0, :, late].mean(dim=1).abs().mean()
    after = (normed[1] - normed[0])[0, :, late].mean(dim=1).abs().mean()
    assert n.stream_norm and after < 0.35 * before, (before, after)


def test_stream_normalisation_forgets_past_its_horizon():
    from s2v.motion.network import MotionNetConfig

    net = MotionNet(MotionNetConfig(stream_norm=True, stream_norm_horizon=300.0)).eval()
    net.set_normalisation(torch.full((160,), -20.0), torch.ones(160))  # far below: every frame counts
    loud = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, 640 * 200).astype(np.float32))
    state = net.initial_state()
    with torch.no_grad():
        for start in range(0, len(loud), 640 * 10):  # 8 s of loud sound, in 0.4 s calls
            _, state = net(loud[start : start + 640 * 10], state)
    assert 200.0 < state[0, -1].item() <= 300.0 + 1e-3  # the weight of what the mean remembers is bounded
