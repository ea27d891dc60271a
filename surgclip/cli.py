"""The ``surgclip`` command. Each area registers its own sub-commands, imported only when used:

    surgclip train ...          (surgclip.train.cli)
    surgclip data stats DB      (surgclip.data.cli)   extract-frames, sample
    surgclip zeroshot ...       (surgclip.evaluation.cli)   linear-probe, index, search
    surgclip serve --index DIR  (surgclip.serve.cli)   search an index in the browser
"""
from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> module providing ``register(subparsers)``; a module may register several commands.
COMMANDS = {
    "train": "surgclip.train.cli",
    "data": "surgclip.data.cli",
    "extract-frames": "surgclip.data.cli",
    "sample": "surgclip.data.cli",
    "zeroshot": "surgclip.evaluation.cli",
    "linear-probe": "surgclip.evaluation.cli",
    "index": "surgclip.evaluation.cli",
    "search": "surgclip.evaluation.cli",
    "retrieval": "surgclip.evaluation.cli",
    "eval": "surgclip.evaluation.cli",
    "models": "surgclip.cli",
    "coop": "surgclip.evaluation.probe_cli",
    "cvs": "surgclip.evaluation.probe_cli",
    "mcq": "surgclip.evaluation.probe_cli",
    "serve": "surgclip.serve.cli",
}


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list model names and registered pretrained weights")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from .factory import list_models
    from .pretrained import cache_dir, list_pretrained

    for name in list_models():
        tags = [t for _, t in list_pretrained(name)]
        print(f"{name:12s} pretrained: {', '.join(tags) or '-'}")
    print(f"weights cache: {cache_dir()}")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="surgclip", description=__doc__,
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
        print(f"surgclip {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
