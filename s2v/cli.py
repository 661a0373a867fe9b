"""`s2v` command line: serve, client, bench, agent, render, prepare, train, export, eval.

Each subcommand fills its component's config dataclass from flags and S2V_* variables and calls
that component. torch is imported only by train, export and eval.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from s2v.settings import add_arguments, from_sources


@dataclass
class PrepareConfig:
    image: Path = field(default=Path("photo.jpg"), metadata={"help": "photo to prepare"})
    output: Path = field(default=Path("avatars"), metadata={"help": "avatar store folder", "short": ("-o",)})


def _serve(args: argparse.Namespace) -> None:
    from s2v.server.app import serve
    from s2v.server.config import ServerConfig

    serve(from_sources(ServerConfig, args))


def _client(args: argparse.Namespace) -> None:
    from s2v.client.live import ClientConfig, run_client

    stats = run_client(from_sources(ClientConfig, args))
    print(json.dumps(stats, indent=2))


def _bench(args: argparse.Namespace) -> None:
    from s2v.client.load import BenchConfig, run_bench

    run_bench(from_sources(BenchConfig, args))


def _agent(args: argparse.Namespace) -> None:
    from s2v.client.agent_bench import AgentBenchConfig, run_agent_bench

    print(json.dumps(run_agent_bench(from_sources(AgentBenchConfig, args)), indent=2))


def _load_avatar(image: Path | None, config):
    from s2v.avatar import AvatarStore, prepare_avatar

    if image is None:
        return AvatarStore.default().builtin(config)
    return prepare_avatar(Path(image).read_bytes(), config)


def _render(args: argparse.Namespace) -> None:
    from s2v.avatar import AvatarConfig
    from s2v.offline import RenderConfig, render_file
    from s2v.runtime.model import ExportedModel, ModelConfig

    config = from_sources(RenderConfig, args)
    if config.audio is None and config.contact_sheet is None:
        raise SystemExit("s2v render: --audio WAV is required (or --contact-sheet PNG alone)")
    if (config.phone_sheet is None) != (config.phones is None) or (config.phones and config.audio is None):
        raise SystemExit("s2v render: --phone-sheet PNG and --phones FILE go together, with --audio")
    model_config = from_sources(ModelConfig, args)
    avatar = _load_avatar(config.image, from_sources(AvatarConfig, args))
    if config.contact_sheet is not None:
        from s2v.render.graph import GraphRenderer
        from s2v.review import contact_sheet

        contact_sheet(GraphRenderer(model_config.model), avatar, config.contact_sheet)
        print(f"wrote {config.contact_sheet}")
    if config.audio is not None:
        model = ExportedModel(model_config)
        options = {"prompt": config.prompt, "batch": config.batch, "seed": config.seed}
        if config.phone_sheet is not None and config.phones is not None:
            from s2v.review import render_phone_sheet

            stats = render_phone_sheet(model, avatar, config.audio, config.phones, config.output, config.phone_sheet,
                                       title=config.audio.name, **options)
            print(f"wrote {config.phone_sheet}")
        else:
            stats = render_file(model, avatar, config.audio, config.output, **options)
        print(f"wrote {config.output}: {stats['frames']} frames, {stats['realtime_factor']:.1f}x real time")


def _prepare(args: argparse.Namespace) -> None:
    from s2v.avatar import AvatarConfig, AvatarStore

    config = from_sources(PrepareConfig, args)
    avatar = AvatarStore(config.output).put(config.image.read_bytes(), from_sources(AvatarConfig, args))
    print(json.dumps({"avatar": avatar.id, "info": avatar.info}, indent=2, default=str))


def _train(args: argparse.Namespace) -> None:
    from s2v.training.train import TrainConfig, train

    path = train(from_sources(TrainConfig, args))
    print(f"wrote {path}; next: s2v export --checkpoint {path}")


def _export(args: argparse.Namespace) -> None:
    from s2v.avatar import AvatarStore
    from s2v.export import ExportConfig, compare_with_torch, export_graph
    from s2v.render.bench import step_ms
    from s2v.runtime.model import ExportedModel, ModelConfig

    config = from_sources(ExportConfig, args)
    avatar = AvatarStore.default().builtin()
    path = export_graph(config, avatar)
    for frames in (1, 7):
        diffs = compare_with_torch(path, config.checkpoint, avatar, frames)
        print(f"torch vs ONNX Runtime, {frames} frame(s): " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    median, p95 = step_ms(ExportedModel(ModelConfig(model=path, device="cpu", threads=1)), avatar)
    print(f"ONNX Runtime, one thread, streaming one frame per call: {median:.2f} ms median, "
          f"{p95:.2f} ms p95 per 40 ms frame")


def _eval(args: argparse.Namespace) -> None:
    from s2v.training.evaluate import EvalConfig, run_eval

    print(json.dumps(run_eval(from_sources(EvalConfig, args)), indent=2))


def _parser(argv: list[str]) -> argparse.ArgumentParser:
    from s2v.avatar import AvatarConfig
    from s2v.offline import RenderConfig
    from s2v.runtime.model import ModelConfig

    parser = argparse.ArgumentParser(prog="s2v", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help_text: str, *configs: type, positional: tuple[str, ...] = ()):
        p = sub.add_parser(name, help=help_text, description=help_text)
        for pos in positional:
            p.add_argument(pos, type=Path)
        for cls in configs:
            add_arguments(p, cls, skip=positional)
        p.set_defaults(handler=handler)
        return p

    from s2v.client.agent_bench import AgentBenchConfig
    from s2v.client.live import ClientConfig
    from s2v.client.load import BenchConfig
    from s2v.server.config import ServerConfig

    command("serve", _serve, "run the avatar server (WebRTC, HTTP, websocket)", ServerConfig)
    command("client", _client, "stream a WAV to a server, record the avatar, print fps/latency/sync", ClientConfig)
    command("bench", _bench, "N live WebRTC sessions at once against one server: fps, latency, server CPU",
            BenchConfig)
    command("agent", _agent, "drive a server's /agent socket as a voice agent: fps, A/V sync, playback events, "
            "interruption latency", AgentBenchConfig)
    command("render", _render, "lip-sync a photo to an audio file offline into an MP4", RenderConfig, ModelConfig,
            AvatarConfig)
    command("prepare", _prepare, "prepare a photo as an avatar (face, landmarks, crop)", PrepareConfig, AvatarConfig,
            positional=("image",))
    _add_torch_commands(command, next((a for a in argv if not a.startswith("-")), ""))
    return parser


# Subcommands whose config dataclasses import torch: (handler, help, module, config class name).
_TORCH_COMMANDS = {
    "train": (_train, "train the motion network from synthesized and recorded speech (needs the train extra)",
              "s2v.training.train", "TrainConfig"),
    "export": (_export, "export the ONNX graph and check it against torch", "s2v.export", "ExportConfig"),
    "eval": (_eval, "lip-sync metrics on the held-out voice, or on any WAV with a phone alignment",
             "s2v.training.evaluate", "EvalConfig"),
}


def _add_torch_commands(command, wanted: str) -> None:
    """Only the subcommand asked for loads its flags (and torch); the others are listed by name and help alone."""
    for name, (handler, help_text, module, config) in _TORCH_COMMANDS.items():
        configs = (getattr(importlib.import_module(module), config),) if name == wanted else ()
        command(name, handler, help_text, *configs)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, ConnectionError) as exc:  # bad input, no index: one clear line
        raise SystemExit(f"s2v {args.command}: {exc}") from None


if __name__ == "__main__":
    main()
