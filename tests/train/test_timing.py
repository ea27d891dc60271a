import json
import time

import lightning as L
import pytest
import torch

from surgclip.train.module import SurgCLIPModule
from surgclip.train.timing import RunTimer
from helpers import TINY_TRAIN, SyntheticClips, synthetic_datamodule


class Snapshot(L.Callback):
    """Keeps the trained weights as they are when fit ends (before RunTimer's bare steps)."""

    def on_fit_end(self, trainer, module):
        self.params = {k: v.detach().clone() for k, v in module.model.state_dict().items()}


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])  # bf16-mixed: trains on CPU, timed under autocast
def test_run_timer_writes_elapsed_and_bare_compute(tmp_path, precision):
    L.seed_everything(0)
    module = SurgCLIPModule(model="tiny", model_overrides=TINY_TRAIN, optim={"warmup_steps": 1, "lr": 1e-3})
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


class SlowClips(SyntheticClips):
    def __init__(self, delay_s, **kwargs):
        super().__init__(**kwargs)
        self.delay_s = delay_s

    def __getitem__(self, i):
        time.sleep(self.delay_s)
        return super().__getitem__(i)


def test_run_timer_splits_elapsed_into_steps_data_wait_validation(tmp_path, capsys):
    L.seed_everything(0)
    module = SurgCLIPModule(model="tiny", model_overrides=TINY_TRAIN, optim={"warmup_steps": 1, "lr": 1e-3})
    dm = synthetic_datamodule(module.tokenizer, n=24)
    dm.train, dm.val = SlowClips(0.005, n=24), SlowClips(0.1, n=8, seed=99)  # 3 x 8 x 5 ms to load; 0.8 s to validate
    timer = RunTimer(bare_steps=1, warmup=0, keep_batches=1)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                        max_epochs=1, limit_train_batches=3, limit_val_batches=1, num_sanity_val_steps=0,
                        val_check_interval=2, callbacks=[timer])  # validation between steps 2 and 3
    trainer.fit(module, dm)
    out = json.loads((tmp_path / "timing.json").read_text())
    split = out["split_s"]
    assert sum(split.values()) == pytest.approx(out["elapsed_s"])
    assert split["validation"] >= 0.8  # the slow validation loader is validation, and not data wait:
    assert 0.12 <= split["data_wait"] < 0.8  # 24 training items x 5 ms, loaded between the steps
    assert split["train_steps"] > 0 and split["other"] > 0
    assert 0.04 <= out["data_wait_first_batches_s"] < split["data_wait"]  # the first batch: 8 items x 5 ms
    assert out["steps_vs_bare"] == pytest.approx(split["train_steps"] / out["bare_compute_s"])
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("where it went: training steps ") and f"waiting for data {split['data_wait']:.1f} s" in line


def test_run_timer_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bare_steps >= 1"):
        RunTimer(bare_steps=0)


def _fit_two_epochs(tmp_path, callbacks):
    L.seed_everything(0)
    module = SurgCLIPModule(model="tiny", model_overrides=TINY_TRAIN, optim={"warmup_steps": 1, "lr": 1e-3})  # text dropout 0.1
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                        max_epochs=2, limit_train_batches=3, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=callbacks)
    trainer.fit(module, synthetic_datamodule(module.tokenizer, n=24))
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


class RngAtEpochEnd(L.Callback):
    def __init__(self):
        self.states = []

    def on_train_epoch_end(self, trainer, module):
        self.states.append(torch.get_rng_state())


def test_bare_steps_sampled_through_the_run_leave_the_training_as_it_was(tmp_path):
    """A probe after each epoch times a bare step of a copy (its dropout draws from the global RNG);
    the RNG state after it is the one before it, the run's weights those of a run without the timer,
    and bare_step_s is the median of every timed step."""
    timer = RunTimer(bare_steps=3, warmup=1, keep_batches=2, probe_steps=1)
    before, after = RngAtEpochEnd(), RngAtEpochEnd()
    timed = _fit_two_epochs(tmp_path / "timed", [before, timer, after])
    assert len(before.states) == 2 and all(torch.equal(a, b) for a, b in zip(before.states, after.states))
    plain = _fit_two_epochs(tmp_path / "plain", [])
    for k in plain:
        assert torch.equal(timed[k], plain[k]), k
    out = json.loads((tmp_path / "timed" / "timing.json").read_text())
    samples = out["bare_step_samples_s"]
    assert len(samples) == 2 * 1 + 3 and all(s > 0 for s in samples)  # two epochs' probes + three at the end
    assert out["bare_step_s"] == pytest.approx(sorted(samples)[2])
    assert out["probe_s"] >= sum(samples[:2])  # the probes' time, left out of elapsed_s
    assert sum(out["split_s"].values()) == pytest.approx(out["elapsed_s"])
