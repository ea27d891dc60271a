"""Every file ``save_pretrained`` and training's export write gets the mode a plain ``open(path, "w")``
would give it (0666 filtered by the umask), the safetensors weights included: safetensors renames its
own 0600 temporary file into place, which must not leak through."""
import contextlib
import os
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from surgclip.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_pretrained
from surgclip.train.callbacks import AtomicCheckpointIO, ExportAndReport
from surgclip.train.module import SurgCLIPModule
from helpers import TINY_TRAIN, small_model, synthetic_datamodule

UMASKS = [0o022, 0o077]


@contextlib.contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): oct(p.stat().st_mode & 0o7777) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("mask", UMASKS, ids=oct)
def test_save_pretrained_follows_umask(tmp_path, mask):
    model = small_model("tiny")
    with umask(mask):
        out = save_pretrained(model, tmp_path / "m")
        save_pretrained(model, out)  # replacing existing files too
    modes = _modes(out)
    assert set(modes) == {CONFIG_NAME, WEIGHTS_NAME}  # no temporary file left behind
    assert modes == dict.fromkeys(modes, oct(0o666 & ~mask))


@pytest.mark.parametrize("mask", UMASKS, ids=oct)
def test_training_export_follows_umask(tmp_path, mask):
    module = SurgCLIPModule(model="tiny", model_overrides=TINY_TRAIN, optim={"warmup_steps": 1, "lr": 1e-3})
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=2, limit_train_batches=1, limit_val_batches=1,
        num_sanity_val_steps=0, log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, logger=CSVLogger(tmp_path, name="run"), plugins=[AtomicCheckpointIO()],
        callbacks=[ModelCheckpoint(monitor="val/rsum", mode="max", save_last=True), ExportAndReport()])
    with umask(mask):
        trainer.fit(module, synthetic_datamodule(module.tokenizer, n=8))
    run = Path(trainer.log_dir)
    modes = _modes(run)
    # the export (model dir), the report, the loss curve and the checkpoints were all written
    for name in (f"model/{WEIGHTS_NAME}", f"model/{CONFIG_NAME}", "report.json", "report.md", "loss_curve.png"):
        assert name in modes, sorted(modes)
    assert any(name.startswith("checkpoints/") and name.endswith(".ckpt") for name in modes), sorted(modes)
    assert not [n for n in modes if n.endswith(".tmp")]
    assert modes == dict.fromkeys(modes, oct(0o666 & ~mask))
