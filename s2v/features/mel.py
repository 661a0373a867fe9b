"""Streaming log-mel front end built from plain convolutions and matmuls, so it exports to ONNX.

torch.stft exports badly; a strided conv1d with fixed windowed-DFT kernels computes the same
spectrum. Each call receives the previous call's last `pcm_tail` samples and a new chunk of
k * hop samples and returns exactly k frames, whose windows end at the chunk's hop boundaries:
frame k covers samples [-pcm_tail + hop*k, hop + hop*k) relative to the chunk start. No frame
waits for future audio, so the front end adds no latency and streams exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from s2v.contract import CONTRACT, AudioSpec


def mel_filterbank(spec: AudioSpec, n_bins: int, warp: float = 1.0) -> np.ndarray:
    """Triangular HTK-mel filters [n_bins, n_mels] over DFT bins 0 .. sample_rate/2.

    warp != 1 reads each bin as if its frequency were `warp` times higher: formants move as for a
    shorter (warp > 1) or longer vocal tract. Training uses it to imitate other speakers (VTLP).
    """

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    mels = np.linspace(hz_to_mel(np.array(spec.fmin)), hz_to_mel(np.array(spec.fmax)), spec.n_mels + 2)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    freqs = np.linspace(0.0, spec.sample_rate / 2, n_bins) * warp
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return fb.T.astype(np.float32)


class LogMel(nn.Module):
    """pcm_tail [B, win-hop] + chunk [B, k*hop] -> (log-mel [B, n_mels, k], new tail [B, win-hop]).

    `filterbank` [B, bins, n_mels] replaces the fixed one, for training-time frequency warping only.
    """

    def __init__(self, spec: AudioSpec = CONTRACT.audio, eps: float = 1e-8) -> None:
        super().__init__()
        self.spec = spec
        self.eps = eps
        win, n_bins = spec.win, spec.win // 2 + 1
        n = np.arange(win)
        window = 0.5 - 0.5 * np.cos(2 * math.pi * n / win)  # periodic Hann
        phase = 2 * math.pi * np.outer(np.arange(n_bins), n) / win
        # Scaled by the window's sum so a full-scale sine has power ~0.25 in its bin, whatever `win` is.
        kernels = np.concatenate([np.cos(phase), -np.sin(phase)]) * window / window.sum()
        # Fixed by the spec: rebuilt on construction, not stored in checkpoints.
        self.register_buffer("dft", torch.from_numpy(kernels.astype(np.float32))[:, None, :], persistent=False)
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(spec, n_bins)), persistent=False)
        self.n_bins = n_bins

    def forward(self, pcm_tail: Tensor, chunk: Tensor, filterbank: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = torch.cat([pcm_tail, chunk], dim=1)
        spec = nn.functional.conv1d(x.unsqueeze(1), self.dft, stride=self.spec.hop)  # [B, 2*bins, k]
        re, im = spec[:, : self.n_bins], spec[:, self.n_bins :]
        power = (re * re + im * im).transpose(1, 2)  # [B, k, bins]
        mel = torch.matmul(power, self.fb if filterbank is None else filterbank).transpose(1, 2)  # [B, n_mels, k]
        return torch.log(mel + self.eps), x[:, -self.spec.pcm_tail :]
