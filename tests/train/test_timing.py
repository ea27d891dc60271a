import json

import lightning as L
import pytest
import torch

from surgclip.train.module import SurgCLIPModule
from surgclip.train.timing import RunTimer
from helpers import TINY_TRAIN, synthetic_datamodule


class Snapshot(L.Callback):
    """Keeps the trained weights as they are when fit ends (before RunTimer's bare steps)."""

    def on_fit_end(self, trainer, module):
        self.params = {k: v.detach().clone() for k, v in module.model.state_dict().items()}


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])  # bf16-mixed: trains on CPU, timed under autocast
def test_run_timer_writes_elapsed_and_bare_compute(tmp_path, precision):
    L.seed_everything(0)
    module = SurgCLIPModule(model="tiny", model_overrides=TINY_TRAIN, warmup_steps=1, lr=1e-3)
    snap, timer = Snapshot(), RunTimer(bare_steps=2, warmup=1, keep_batches=2)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                        max_epochs=1, limit_train_batches=3, precision=precision, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=[snap, timer])
    trainer.fit(module, synthetic_datamodule(module.tokenizer, n=24))
    out = json.loads((tmp_path / "timing.json").read_text())
    assert out["steps"] == 3 and out["clips"] == 24 and out["precision"] == precision
    assert out["bare_step_s"] > 0 and out["elapsed_s"] > 0
    assert out["bare_compute_s"] == pytest.approx(3 * out["bare_step_s"])
    assert out["ratio"] == pytest.approx(out["elapsed_s"] / out["bare_compute_s"])
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert timer.batches == []  # the kept batches are released
    for k, v in module.model.state_dict().items():  # the bare steps trained a copy, not the model
        assert torch.equal(v, snap.params[k]), k


def test_run_timer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bare_steps >= 1"):
        RunTimer(bare_steps=0)
