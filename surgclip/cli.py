"""The ``surgclip`` command. Each area registers its own commands, imported only when used:

    surgclip train ...                       (surgclip.train.cli)
    surgclip data stats | splits | extract-frames | sample     (surgclip.data.cli)
    surgclip eval [zeroshot | linear-probe | coop | cvs | mcq | retrieval]   (surgclip.evaluation.cli)
    surgclip index | search                  (surgclip.evaluation.cli)
    surgclip serve --index DIR               (surgclip.serve.cli)
    surgclip models

The runs' and data tools' former top-level names still work: ``surgclip zeroshot ...`` is
``surgclip eval zeroshot ...``, ``surgclip sample ...`` is ``surgclip data sample ...`` (``ALIASES``).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> module providing ``register(subparsers)``; a module may register several commands.
COMMANDS = {
    "train": "surgclip.train.cli",
    "data": "surgclip.data.cli",
    "eval": "surgclip.evaluation.cli",
    "index": "surgclip.evaluation.cli",
    "search": "surgclip.evaluation.cli",
    "serve": "surgclip.serve.cli",
    "models": "surgclip.cli",
}
# former top-level names -> the command path they stand for
ALIASES = {
    "zeroshot": ("eval", "zeroshot"), "linear-probe": ("eval", "linear-probe"), "coop": ("eval", "coop"),
    "cvs": ("eval", "cvs"), "mcq": ("eval", "mcq"), "retrieval": ("eval", "retrieval"),
    "sample": ("data", "sample"), "extract-frames": ("data", "extract-frames"),
}


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list model names and registered pretrained weights")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from .baselines import ALIASES, MODELS
    from .factory import available_models
    from .pretrained import cache_dir, list_pretrained

    for name in available_models():
        tags = [t for _, t in list_pretrained(ALIASES.get(name, name))]
        info = MODELS.get(name)
        alias = f" (= {ALIASES[name]})" if name in ALIASES else ""
        print(f"{name:12s} pretrained: {', '.join(tags) or '-'}{alias}")
        if info:
            print(f"{'':12s} {info['source']}; licence: {info['licence']}; needs: {info['weights']}")
    print(f"weights cache: {cache_dir()}")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="surgclip", description="surgclip: pretrain, evaluate and search with video-text models for surgical video",
                                     epilog="aliases: " + ", ".join(f"{a} = {' '.join(p)}" for a, p in ALIASES.items()),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else sorted(set(COMMANDS.values()))
    for name in modules:
        try:
            importlib.import_module(name).register(subparsers)
        except ModuleNotFoundError as err:
            if command in COMMANDS:
                raise
            print(f"(commands of {name} unavailable: {err})", file=sys.stderr)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    typed = argv[0] if argv and not argv[0].startswith("-") else None
    if typed in ALIASES:
        argv = [*ALIASES[typed], *argv[1:]]
    command = argv[0] if argv and not argv[0].startswith("-") else None
    if command == "train":  # LightningCLI parses its own arguments
        from .train.cli import train_main

        return train_main(argv[1:])
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as err:
        print(f"surgclip {typed or args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
