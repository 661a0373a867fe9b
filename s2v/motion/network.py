"""MotionNet: streaming speech -> mouth motion, small enough to run per 40 ms frame on one CPU core.

log-mel (4 frames of 10 ms per video frame, stacked to 160 dims) -> fixed normalisation -> two
causal Conv1d over video frames -> GRU -> Linear -> per-channel squashing. Everything that must
survive between calls (PCM tail, conv left context, GRU hidden state) is packed into one flat
`state` vector, so the exported graph has a single state input and output. The network is causal;
it is trained to output frame t - lookahead_frames at step t, which buys that many frames of
look-ahead at the cost of as much latency.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from s2v.contract import CONTRACT, MOTION_CHANNELS
from s2v.features import LogMel

log = logging.getLogger(__name__)


@dataclass
class MotionNetConfig:
    """Hyper-parameters; stored in the checkpoint as a dict."""

    conv_channels: int = 160
    kernel: int = 3
    hidden: int = 256
    dropout: float = 0.1  # training only; the exported graph runs in eval mode
    lookahead_frames: int = CONTRACT.lookahead_frames
    # Per-stream spectral normalisation: subtract the stream's own mean log-mel spectrum over its louder frames,
    # carried in the state, so a microphone's or a throat's colour is taken out before the network sees it.
    stream_norm: bool = True
    stream_norm_prior: float = 50.0  # frames of 10 ms: the mean starts at the training mean and moves as speech comes
    stream_norm_gate: float = -3.0  # log-power below the training mean (about 13 dB) where frames stop counting
    stream_norm_horizon: float = 3000.0  # frames: past 30 s of speech the mean forgets, so a new voice is followed


class MotionNet(nn.Module):
    """forward(audio [n*640], state [1, S]) -> (motion [n, 6], new_state [1, S]); zero state starts a stream."""

    def __init__(self, config: MotionNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MotionNetConfig()
        spec = CONTRACT.audio
        self.mel = LogMel(spec)
        self.feat_dim = spec.n_mels * spec.mels_per_frame
        self.register_buffer("feat_mean", torch.zeros(self.feat_dim))
        self.register_buffer("feat_std", torch.ones(self.feat_dim))
        self.conv1 = nn.Conv1d(self.feat_dim, cfg.conv_channels, cfg.kernel)
        self.conv2 = nn.Conv1d(cfg.conv_channels, cfg.conv_channels, cfg.kernel)
        self.gru = nn.GRU(cfg.conv_channels, cfg.hidden, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden, len(MOTION_CHANNELS))
        self.register_buffer("tanh_mask", torch.tensor([c == "lip_spread" for c in MOTION_CHANNELS]), persistent=False)
        ctx = cfg.kernel - 1
        norm = (spec.n_mels + 1) if cfg.stream_norm else 0  # sum of gated log-mel deviations, and their weight
        self._sizes = (spec.pcm_tail, self.feat_dim * ctx, cfg.conv_channels * ctx, cfg.hidden, norm)

    @property
    def state_size(self) -> int:
        return sum(self._sizes)

    def initial_state(self, batch: int = 1) -> Tensor:
        return torch.zeros(batch, self.state_size)

    def set_normalisation(self, mean: Tensor, std: Tensor) -> None:
        """Fix the feature normalisation (per stacked-mel dimension) measured on training data."""
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(std.clamp_min(1e-3))

    def forward(self, audio: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        hidden, new_state = self.encode(audio.unsqueeze(0), state)
        return self.motion(hidden)[0], new_state

    def motion(self, hidden: Tensor) -> Tensor:
        """GRU outputs [B, n, hidden] -> motion [B, n, 6] in each channel's range."""
        z = self.head(hidden)
        return torch.where(self.tanh_mask, torch.tanh(z), torch.sigmoid(z))

    def encode(self, audio: Tensor, state: Tensor, filterbank: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """audio [B, n*640], state [B, S] -> (GRU outputs [B, n, hidden], new_state [B, S]).

        `filterbank` [B, bins, n_mels] warps each item's mel scale in training (see LogMel). Training
        reads the GRU outputs too, to put an auxiliary phone classifier on them.
        """
        b = audio.shape[0]
        ctx = self.config.kernel - 1
        o1 = self._sizes[0]
        o2 = o1 + self._sizes[1]
        o3 = o2 + self._sizes[2]
        o4 = o3 + self._sizes[3]
        tail, buf1, buf2, h, norm = state[:, :o1], state[:, o1:o2], state[:, o2:o3], state[:, o3:o4], state[:, o4:]

        mel, new_tail = self.mel(tail, audio, filterbank)  # [B, n_mels, 4n]
        if self.config.stream_norm:
            mel, norm = self._stream_norm(mel, norm)
        feats = mel.transpose(1, 2).reshape(b, -1, self.feat_dim)  # [B, n, 160]: 4 mel frames per video frame
        x = ((feats - self.feat_mean) / self.feat_std).transpose(1, 2)  # [B, 160, n]

        x = torch.cat([buf1.reshape(b, self.feat_dim, ctx), x], dim=2)
        new_buf1 = x[:, :, -ctx:]
        x = self.dropout(nn.functional.gelu(self.conv1(x)))
        x = torch.cat([buf2.reshape(b, self.config.conv_channels, ctx), x], dim=2)
        new_buf2 = x[:, :, -ctx:]
        x = self.dropout(nn.functional.gelu(self.conv2(x)))

        y, h_new = self.gru(x.transpose(1, 2), h.unsqueeze(0).contiguous())
        new_state = torch.cat([new_tail, new_buf1.reshape(b, -1), new_buf2.reshape(b, -1), h_new[0], norm], dim=1)
        return y, new_state

    def _stream_norm(self, mel: Tensor, norm: Tensor) -> tuple[Tensor, Tensor]:
        """mel [B, n_mels, T] less the stream's running mean deviation from the training spectrum.

        A running sum rather than a decaying average, so it is a cumulative sum over time (one ONNX op, any
        chunk length) and the same whether a stream comes in one call or in many; past `stream_norm_horizon`
        frames of weight, the carried sums are scaled down after each call. Frames far below the training level
        (pauses, a quiet noise floor) do not count.
        """
        n_mels = mel.shape[1]
        dev = mel - self.feat_mean[:n_mels, None]
        gate = torch.sigmoid(2.0 * (dev.mean(dim=1, keepdim=True) - self.config.stream_norm_gate))  # [B, 1, T]
        total = norm[:, :n_mels, None] + torch.cumsum(gate * dev, dim=2)
        weight = norm[:, n_mels:, None] + torch.cumsum(gate, dim=2)
        mel = mel - total / (weight + self.config.stream_norm_prior)
        carried = torch.cat([total[:, :, -1], weight[:, :, -1]], dim=1)
        return mel, carried * torch.clamp(self.config.stream_norm_horizon / (weight[:, :, -1] + 1e-6), max=1.0)

    def save(self, path: Path, **extra: object) -> None:
        torch.save({"config": asdict(self.config), "state_dict": self.state_dict(), **extra}, path)

    @classmethod
    def load(cls, path: str | Path) -> "MotionNet":
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        net = cls(MotionNetConfig(**{"stream_norm": False, **ckpt["config"]}))  # checkpoints from before it
        net.load_state_dict(ckpt["state_dict"])
        net.eval()
        log.info("loaded MotionNet from %s (state_size=%d)", path, net.state_size)
        return net
