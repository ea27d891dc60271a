"""``surgclip train``: LightningCLI over SurgCLIPModule + SurgLaViDataModule.

Configs compose: ``configs/base.yaml`` (loggers, checkpoints, export) first, then a per-model file
that sets only what differs (later files win; ``callbacks+:`` appends)::

    surgclip train -c configs/base.yaml -c configs/sample.yaml       # = surgclip train fit -c ...
    surgclip train fit -c configs/base.yaml -c configs/surgclip_b.yaml --trainer.devices 8
    surgclip train fit -c configs/base.yaml -c configs/sample.yaml --print_config
    surgclip train fit -c configs/base.yaml -c configs/sample.yaml --ckpt_path runs/sample/version_0/checkpoints/last.ckpt

``name`` names the run: a logger whose ``name`` is null logs under it (``runs/NAME/version_K``);
its default is the model's name.
"""
from __future__ import annotations

import sys
import warnings
from typing import Optional

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="pretrain with LightningCLI (surgclip train -c configs/base.yaml -c configs/sample.yaml)",
                              add_help=False)
    p.set_defaults(func=lambda args: train_main(sys.argv[2:]))


def _cli_class():
    from lightning.pytorch.cli import LightningCLI

    from .callbacks import AtomicCheckpointIO

    class SurgCLIPCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            # the data pipeline tokenizes and preprocesses for the model being trained
            parser.link_arguments("model.model", "data.model_name")
            parser.add_argument("--name", type=Optional[str], default=None,
                                help="the run's name: loggers with name null log under it (default: the model's name)")

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            name_loggers(config)
            if self.subcommand == "fit" and not has_export(config):
                print("surgclip train: note: no surgclip.train.callbacks.ExportAndReport callback is configured, so "
                      "the run exports no model and writes no report; compose with configs/base.yaml first "
                      "(surgclip train -c configs/base.yaml -c YOUR.yaml)", file=sys.stderr)

        def instantiate_trainer(self, **kwargs):
            plugins = list(kwargs.get("plugins") or [])
            if not any(isinstance(p, AtomicCheckpointIO) for p in plugins):
                plugins.append(AtomicCheckpointIO())
            kwargs["plugins"] = plugins
            return super().instantiate_trainer(**kwargs)

    return SurgCLIPCLI


def name_loggers(config) -> None:
    """Give every configured logger whose ``name`` is null the run's name (``config.name``, default
    the model's name)."""
    name = config.get("name") or config.model.model
    loggers = config.trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and "name" in init_args and init_args.name is None:
            init_args.name = name


def has_export(config) -> bool:
    """Whether the trainer's callbacks include ``ExportAndReport``."""
    callbacks = config.trainer.get("callbacks") or []
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        if str(getattr(callback, "class_path", "")).endswith("ExportAndReport"):
            return True
    return False


def train_main(argv: list[str] | None = None) -> int:
    """Run LightningCLI; a bare ``-c config`` means ``fit``."""
    from ..data.datamodule import SurgLaViDataModule
    from .module import SurgCLIPModule

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["fit", *argv]
    cli_class = _cli_class()
    # LightningCLI warns when it gets ``args`` while sys.argv holds them too (``surgclip train`` passes
    # them on); sys.argv itself must stay: DDP starts the other ranks by re-running it
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within Python")
    # SurgLaViDataModule resumes a mid-epoch checkpoint at the next unseen batch itself (its
    # state_dict / load_state_dict), which Lightning's check of the loader alone does not see
    warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch ended")
    try:
        cli_class(SurgCLIPModule, SurgLaViDataModule, args=argv, seed_everything_default=0,
                  save_config_kwargs={"overwrite": True}, parser_kwargs={"prog": "surgclip train"})
    except (FloatingPointError, ValueError, FileNotFoundError) as err:
        print(f"surgclip train: error: {err}", file=sys.stderr)
        return 1
    return 0
