"""Train MotionNet from scratch on synthesised and recorded speech: `s2v train` or `python -m s2v.training.train`.

Training clips (synthesised sentences, and recorded people's prompts in four languages) are joined
into one long stream with random silences between them; each batch takes random crops of it at a
random speaking rate, degrades them (s2v.training.augment) and runs them through the same
streaming forward pass the exported graph uses, from a zero state.
Targets come from the phone timings (s2v.motion.visemes), shifted by the look-ahead.
"""

from __future__ import annotations

import argparse
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from s2v.contract import CONTRACT, MOTION_CHANNELS
from s2v.features import mel_filterbank
from s2v.motion.network import MotionNet, MotionNetConfig
from s2v.motion.visemes import CURVE_RATE, PHONE_VISEMES, SILENCE_PHONES, Phone, frame_targets, viseme_curves
from s2v.settings import add_arguments, from_sources
from s2v.training.augment import change_speed, degrade, random_speed, sustain
from s2v.training.clips import Clip
from s2v.training.corpus import REPO_ROOT, CorpusConfig, load_corpus
from s2v.training.evaluate import evaluate_clips

log = logging.getLogger(__name__)

SR = CONTRACT.audio.sample_rate
SPF = CONTRACT.audio.samples_per_frame
FRAME_S = 1.0 / CONTRACT.audio.fps
# Classes of the auxiliary phone classifier: silence, then every phone of the festival/CMU set.
PHONE_CLASSES: tuple[str, ...] = ("pau", *sorted(p for p in PHONE_VISEMES if p not in SILENCE_PHONES))
_PHONE_ID = {p: i for i, p in enumerate(PHONE_CLASSES)}


@dataclass
class TrainConfig:
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    net: MotionNetConfig = field(default_factory=MotionNetConfig)
    seed: int = field(default=0, metadata={"help": "seed of crops, augmentation and initial weights"})
    epochs: int = field(default=24, metadata={"help": "epochs (a held-out check and a log line after each)"})
    steps_per_epoch: int = field(default=250, metadata={"help": "optimiser steps per epoch"})
    batch: int = field(default=32, metadata={"help": "crops per step"})
    crop_frames: int = field(default=80, metadata={"help": "video frames per crop (80 = 3.2 s)"})
    lr: float = field(default=3e-3, metadata={"help": "peak learning rate (one-cycle schedule)"})
    gap_s: tuple[float, float] = (0.05, 1.0)  # silence between training clips in the stream
    vtlp: tuple[float, float] = (0.85, 1.15)  # mel-scale warp per crop, imitating other vocal tracts
    stream_start_p: float = 0.15  # share of crops that start a stream (zero state before silence)
    sustain_p: float = 0.3  # share of training clips with one phone held long ("ummm"; s2v.training.augment)
    warmup_frames: int = 8  # outputs not scored at the start of mid-stream crops (state still empty)
    channel_weights: tuple[float, ...] = (2.0, 1.0, 2.0, 1.0, 0.5, 1.0)
    contact_weight: float = 8.0  # extra weight on frames where closure / tuck should be on
    round_weight: float = 1.0  # extra weight on lip_spread where the lips should be rounded (target < -0.4)
    silence_weight: float = 2.0  # extra weight where nobody speaks (speech target ~0): a still mouth in pauses
    open_weight: float = 3.0  # extra closure weight where the mouth should be open in speech (no lips shut mid-vowel)
    phone_weight: float = 0.05  # auxiliary phone classification from the GRU outputs (training only)
    threads: int = field(default=1, metadata={"help": "torch threads; batches are made on one more thread"})
    out: Path = field(default_factory=lambda: REPO_ROOT / "s2v" / "assets" / "motion.pt",
                      metadata={"help": "checkpoint to write"})


class CropSampler:
    """Random augmented crops of the training stream with their lagged per-frame targets."""

    def __init__(self, clips: list[Clip], config: TrainConfig, rng: np.random.Generator) -> None:
        self.cfg, self.rng = config, rng
        order = rng.permutation(len(clips))
        parts, phones, starts, t = [], [], [], 0
        gaps = [np.zeros(int(rng.uniform(*config.gap_s) * SR), np.float32) for _ in range(len(clips) + 1)]
        for gap, i in zip(gaps, order):
            parts.append(gap)
            t += len(gap)
            starts.append((t, len(gap)))
            audio, clip_phones = clips[i].audio, clips[i].phones
            if rng.random() < config.sustain_p:
                audio, clip_phones = sustain(audio, clip_phones, rng)
            phones += [Phone(p.name, p.start + t / SR, p.end + t / SR) for p in clip_phones]
            parts.append(audio)
            t += len(audio)
        parts.append(gaps[-1])
        self.audio = np.concatenate(parts)
        self.clip_starts = starts  # (sample offset, silence before it)
        self.curves = viseme_curves(phones, len(self.audio) / SR + 1.0)
        self.phone_ids = np.zeros(len(self.curves), np.int64)  # class of the phone at each curve sample
        for p in phones:
            self.phone_ids[round(p.start * CURVE_RATE) : round(p.end * CURVE_RATE)] = _PHONE_ID.get(p.name, 0)
        log.info("training stream: %d clips, %.1f min", len(clips), len(self.audio) / SR / 60)

    def crop(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """(audio [crop_frames*640], targets [crop_frames, C] and phone classes [crop_frames] for rows
        lagged by look-ahead, starts_stream)."""
        cfg, rng = self.cfg, self.rng
        speed = random_speed(rng)
        n_out = cfg.crop_frames * SPF
        n_src = math.ceil(n_out * speed) + SPF
        if rng.random() < cfg.stream_start_p:
            offset, silence = self.clip_starts[int(rng.integers(len(self.clip_starts)))]
            a, starts = offset - int(rng.uniform(0.2, 1.0) * silence), True
        else:
            a, starts = int(rng.integers(0, len(self.audio) - n_src)), False
        src = self.audio[a : a + n_src]
        audio = change_speed(np.pad(src, (0, n_src - len(src))), speed)[:n_out]
        audio = degrade(np.pad(audio, (0, n_out - len(audio))), rng)
        frame = FRAME_S * float(speed)
        start = a / SR - cfg.net.lookahead_frames * frame  # row t shows frame t - lookahead
        centres = ((start + (np.arange(cfg.crop_frames) + 0.5) * frame) * CURVE_RATE).astype(np.int64)
        phones = self.phone_ids[np.clip(centres, 0, len(self.phone_ids) - 1)] * (centres >= 0)
        return audio, frame_targets(self.curves, start, cfg.crop_frames, frame, CURVE_RATE), phones, starts

    def batch(self, size: int) -> tuple[torch.Tensor, ...]:
        """(audio [B, samples], targets [B, frames, C], phone classes [B, frames], loss mask [B, frames, 1],
        warped filterbanks [B, bins, n_mels])."""
        crops = [self.crop() for _ in range(size)]
        audio = torch.from_numpy(np.stack([c[0] for c in crops]))
        targets = torch.from_numpy(np.stack([c[1] for c in crops]))
        phones = torch.from_numpy(np.stack([c[2] for c in crops]))
        mask = torch.ones(size, self.cfg.crop_frames, 1)
        for i, c in enumerate(crops):
            if not c[3]:
                mask[i, : self.cfg.warmup_frames] = 0
        spec = CONTRACT.audio
        warps = self.rng.uniform(*self.cfg.vtlp, size=size)
        fbs = torch.from_numpy(np.stack([mel_filterbank(spec, spec.win // 2 + 1, w) for w in warps]))
        return audio, targets, phones, mask, fbs


def prefetch(sampler: CropSampler, size: int, count: int, depth: int = 4) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield `count` batches made by one background thread (numpy/scipy release the GIL), same order as inline."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    threading.Thread(target=lambda: [q.put(sampler.batch(size)) for _ in range(count)], daemon=True).start()
    for _ in range(count):
        yield q.get()


@torch.no_grad()
def feature_stats(net: MotionNet, sampler: CropSampler, crops: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean/std of each stacked log-mel dimension over augmented crops (pooled across the 4 sub-frames)."""
    audio = sampler.batch(crops)[0]
    mel, _ = net.mel(torch.zeros(crops, CONTRACT.audio.pcm_tail), audio)  # [B, n_mels, frames]
    mean, std = mel.mean(dim=(0, 2)), mel.std(dim=(0, 2))
    k = CONTRACT.audio.mels_per_frame
    return mean.repeat(k), std.repeat(k)


def loss_fn(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Weighted MSE; lips that should be closed (p/b/m) or tucked (f/v) weigh extra, whatever the loudness, and
    so do rounded lips, which the synthetic voices' spread vowels would otherwise average away, pauses,
    where recorded people's breaths and noise floors otherwise leave the jaw ajar, and (open_weight) lips
    held apart in open speech, where a loudness dip alone would otherwise shut them mid-vowel."""
    w = torch.tensor(cfg.channel_weights).expand_as(target).clone()
    for name in ("lip_closure", "lip_tuck"):
        c = MOTION_CHANNELS.index(name)
        w[..., c] = w[..., c] * (1 + cfg.contact_weight * (target[..., c] > 0.5).float())
    closure, jaw = MOTION_CHANNELS.index("lip_closure"), MOTION_CHANNELS.index("jaw_open")
    speaking = target[..., MOTION_CHANNELS.index("speech")] > 0.5
    wide = speaking & (target[..., closure] < 0.05) & (target[..., jaw] > 0.3)
    w[..., closure] = w[..., closure] * (1 + cfg.open_weight * wide.float())
    s = MOTION_CHANNELS.index("lip_spread")
    w[..., s] = w[..., s] * (1 + cfg.round_weight * (target[..., s] < -0.4).float())
    quiet = (target[..., MOTION_CHANNELS.index("speech")] < 0.05).float().unsqueeze(-1)
    w = w * (1 + cfg.silence_weight * quiet)
    w = w * mask
    return (w * (pred - target) ** 2).sum() / w.sum()


def train(config: TrainConfig | None = None) -> Path:
    """Build or load the corpus, train MotionNet from scratch, write and return the checkpoint."""
    cfg = config or TrainConfig()
    t0 = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    corpus = load_corpus(cfg.corpus)
    sampler = CropSampler(corpus.train, cfg, rng)
    net = MotionNet(cfg.net)
    net.set_normalisation(*feature_stats(net, sampler))
    n_params = sum(p.numel() for p in net.parameters())
    log.info("MotionNet: %d parameters, state_size=%d; corpus ready after %.0f s", n_params, net.state_size, time.time() - t0)

    # Naming the phone under each frame makes the GRU tell /m/ from /n/ and /p/ from /t k/, which the
    # blended mouth targets alone teach weakly; the classifier is not part of the checkpoint.
    phone_head = torch.nn.Linear(cfg.net.hidden, len(PHONE_CLASSES))
    params = [*net.parameters(), *phone_head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    total = cfg.epochs * cfg.steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1)
    state0 = net.initial_state(cfg.batch)
    batches = prefetch(sampler, cfg.batch, total)
    bar = tqdm(total=total, desc="train", unit="step", mininterval=2.0)
    for epoch in range(cfg.epochs):
        net.train()
        running = 0.0
        for _ in range(cfg.steps_per_epoch):
            audio, target, phones, mask, fbs = next(batches)
            hidden, _ = net.encode(audio, state0, fbs)
            loss = loss_fn(net.motion(hidden), target, mask, cfg)
            if cfg.phone_weight > 0:
                ce = torch.nn.functional.cross_entropy(phone_head(net.dropout(hidden)).transpose(1, 2), phones,
                                                       reduction="none")
                loss = loss + cfg.phone_weight * (ce * mask[..., 0]).sum() / mask.sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            running += loss.item()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)  # redraw at mininterval, not every step
        m = evaluate_clips(net.eval(), corpus.eval[:20], conditions=("clean",))["clean"]
        log.info("epoch %d/%d: loss %.4f | held-out jaw r %.3f closure(p/b/m) %.2f other closed %.2f lag %+d "
                 "silence jaw %.3f | %.0f s", epoch + 1, cfg.epochs, running / cfg.steps_per_epoch, m["jaw_r"],
                 m["closure_pbm"], m["closure_non_pbm_speech"], int(m["lag_frames"]), m["silence_jaw"],
                 time.time() - t0)
    bar.close()
    net.eval()
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    net.save(cfg.out, channels=list(MOTION_CHANNELS), train_seconds=time.time() - t0,
             train_config={k: str(v) for k, v in asdict(cfg).items()})
    log.info("wrote %s (%.0f KB) after %.0f s", cfg.out, cfg.out.stat().st_size / 1024, time.time() - t0)
    return cfg.out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, TrainConfig)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with logging_redirect_tqdm():
        train(from_sources(TrainConfig, parser.parse_args()))


if __name__ == "__main__":
    main()
