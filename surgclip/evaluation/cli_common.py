"""Arguments and helpers shared by the evaluation commands (``surgclip eval ...``, ``index``, ``search``)."""
from __future__ import annotations

from pathlib import Path

from ..factory import load
from .metrics import CONVENTIONS, DEFAULT_CONVENTION
from .predictions import write_predictions


def metrics_arg(p) -> None:
    """``--metrics surglavi|camma`` (``metrics.CONVENTIONS``)."""
    p.add_argument("--metrics", default=DEFAULT_CONVENTION, choices=sorted(CONVENTIONS),
                   help="metric convention: surglavi (the SurgLaVi evaluation code: every class counts) or camma "
                        "(classes present only); named in every report")


def model_args(p) -> None:
    """``--model``, ``--device``, ``--num-frames``, ``--batch-size``, ``--precision``."""
    p.add_argument("--model", default="tiny", help="model name (surgclip models), save_pretrained directory, or "
                                                   "NAME=WEIGHTS (a weights file or folder for a named model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--num-frames", type=int, default=None, help="frames per clip (default: the model's)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="fp32", help="fp32 (default) or bf16: run the video tower under bf16 autocast (CPU or GPU; fp16 on GPU)")


def load_model(args):
    """(model, preprocess, tokenizer) of ``--model`` on ``--device`` at ``--precision``; ``--model NAME=WEIGHTS``
    loads a registered model (SurgVLP, PeskaVLP, MedSigLIP, ...) from that weights file or folder."""
    name, _, weights = str(args.model).partition("=")
    return load(name, device=args.device, num_frames=args.num_frames, precision=args.precision,
                pretrained=weights or None)


def config_of(args) -> dict:
    """The parsed arguments as a report's ``config``."""
    return {k: v for k, v in vars(args).items() if k != "func"}


def write_run_predictions(out: Path, dataset: str, test, scores: dict) -> list[str]:
    """``out/predictions/<entry>/seed<k>/predictions_{dataset}.csv`` for each probe run's test
    scores (``scores``: ``{"<entry>/seed<k>": [N, C]}`` over the rows of ``test``)."""
    truth = test.targets if test.multilabel else test.labels
    written = []
    for key, sc in scores.items():
        path = out / "predictions" / key / f"predictions_{dataset}.csv"
        write_predictions(path, test.video, test.frame, sc, truth, test.time_s)
        written.append(str(path.relative_to(out)))
    return written


def numbers(text: str, kind) -> list:
    """'1,2,4' -> [1, 2, 4]; '' -> []; a bad item is an error naming it."""
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None
