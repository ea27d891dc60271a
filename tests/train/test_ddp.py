"""Multi-process training through the real CLI: 2 CPU processes (gloo, ``--trainer.strategy ddp``) for
2 epochs with validation (retrieval + zero-shot), checkpointing, export and report, resumed to a 3rd
epoch, against 1 process with the same global batch.

Why the loss curves can agree to float rounding: every item draws its frames and augmentation from
(seed, epoch, index) alone; dropout is off; LevelSampler deals the epoch's order round-robin to the
ranks (Lightning does not re-shuffle it), so global batch k holds the same 8 items on 1 process and
on 2 (in another order, to which InfoNCE is invariant); the loss on each rank is the
full gathered batch's, and DDP's gradient mean undoes the gather's sum. The learning rate is flat
after warmup (``min_lr_ratio 1``) because the cosine's length follows ``max_epochs``, which differs
between the 2-epoch run and its resumption. What remains is float summation order in the gather and
the all-reduce: measured differences are below 1e-6 relative; the tolerance is 1e-5 relative.
"""
import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
import torch

import surgclip
from conftest import REPO

BASE, CONFIG = str(REPO / "configs" / "base.yaml"), str(REPO / "configs" / "sample.yaml")
TINY = {"num_frames": 2, "embed_dim": 16, "preprocess": {"image_size": 32},
        "vision": {"timm": {"img_size": 32, "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2},
                   "temporal_cfg": {"heads": 2, "num_frames": 2}},
        "text": {"config": {"hidden_size": 32, "num_hidden_layers": 1, "hidden_dropout_prob": 0.0,
                            "attention_probs_dropout_prob": 0.0}}}
BATCH, STEPS = 8, 3  # global batch; training steps per epoch


def _first_batch_of_rank1(root) -> list[int]:
    """Caption ids that rank 1 of 2 trains on in its first step."""
    from surgclip.data.datamodule import LevelSampler, SurgLaViDataModule

    dm = SurgLaViDataModule(root=str(root), model_name="tiny", num_frames=2, batch_size=BATCH)
    dm.set_model(lambda texts: torch.zeros(len(texts), 4, dtype=torch.long), {"image_size": 32})
    dm.setup("fit")
    table = dm.datasets["train"].table
    order = list(LevelSampler(table.level, [1, 2, 3], None, 0, 0, num_replicas=2, rank=1))
    return [int(table.caption_id[i]) for i in order[: BATCH // 2]]


def test_level_sampler_deals_global_batches_to_ranks():
    """Batch k of 3 ranks x 4 = batch k of 1 process x 12, as sets; equal shares, padded from the head."""
    from surgclip.data.datamodule import LevelSampler

    levels = torch.randint(1, 4, (50,)).numpy()
    for weights in (None, {1: 1.0, 2: 2.0, 3: 1.0}):
        one = list(LevelSampler(levels, [1, 2, 3], weights, 5, 2))
        shares = [list(LevelSampler(levels, [1, 2, 3], weights, 5, 2, num_replicas=3, rank=r)) for r in range(3)]
        assert [len(s) for s in shares] == [17, 17, 17]
        for k in range(4):
            merged = sorted(i for s in shares for i in s[4 * k: 4 * k + 4])
            assert merged == sorted(one[12 * k: 12 * k + 12])
        assert sorted(i for s in shares for i in s) == sorted(one + one[:1])


def _cli(cwd, *args, devices=1, timeout=300):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests" / "train")]),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "surgclip.cli", "train", "fit", "-c", BASE, "-c", CONFIG, "--trainer.accelerator", "cpu",
           "--trainer.devices", str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def _metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _series(rows, key) -> dict[int, float]:
    return {int(r["step"]): r[key] for r in rows if key in r}


@pytest.mark.slow
def test_two_processes_match_one_resume_freeze_and_skips(small_sample, tmp_path):
    broken = tmp_path / "captions.sqlite"  # two of rank 1's first items point past their video's end
    shutil.copy(small_sample / "captions.sqlite", broken)
    bad_ids = _first_batch_of_rank1(small_sample)[:2]
    with sqlite3.connect(broken) as con:
        con.executemany("UPDATE captions SET start_time = 9000, end_time = 9001 WHERE caption_id = ?",
                        [(i,) for i in bad_ids])
    common = ["--data.root", str(small_sample), "--data.paths.db_path", str(broken), "--data.skip_errors", "true",
              "--data.num_workers", "0", "--data.batch_size", str(BATCH), "--data.num_frames", "2",
              "--model.model_overrides", json.dumps(TINY), "--model.optim.warmup_steps", "2",
              "--model.optim.min_lr_ratio", "1.0",  # flat after warmup: the 2-epoch run and the 3-epoch one share a schedule
              "--model.freeze", "[text_encoder]", "--model.lr_scale", "{vision_encoder: 0.5}",
              "--model.zeroshot.root", str(small_sample / "cholec80"), "--model.zeroshot.stride_s", "8",
              "--trainer.limit_train_batches", str(STEPS), "--trainer.limit_val_batches", "2",
              "--trainer.check_val_every_n_epoch", "1", "--trainer.log_every_n_steps", "1",
              "--trainer.logger", json.dumps([{"class_path": "lightning.pytorch.loggers.CSVLogger",
                                               "init_args": {"save_dir": "runs", "name": "t"}}])]
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir(), single.mkdir()
    probe = ["--trainer.callbacks+=rank_probe.RankProbe", "--trainer.callbacks.out_dir"]
    out = _cli(ddp, *common, "--trainer.max_epochs", "2", *probe, str(ddp / "probe"), devices=2)
    run = ddp / "runs" / "t" / "version_0"
    assert "epoch 0: skipped 2 bad training items (bad_span: 2)" in out
    assert "zero-shot phase accuracy" in out and "skipped training items (all epochs, all ranks): bad_span: 2" in out

    # the ranks stayed in step: same steps, full batches of 4, the two stand-ins on rank 1 only
    ranks = [json.loads((ddp / "probe" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 2 * STEPS
    assert [b[0] for b in ranks[0]["batches"]] == [b[0] for b in ranks[1]["batches"]] == [BATCH // 2] * (2 * STEPS)
    assert sum(b[1] for b in ranks[0]["batches"]) == 0 and ranks[1]["batches"][0][1] == 2
    assert ranks[0]["frozen_trainable"] == ranks[1]["frozen_trainable"] == []

    rows = _metrics(run)
    assert _series(rows, "train/skipped_bad_span") == {STEPS - 1: 2.0, 2 * STEPS - 1: 0.0}
    val = [r for r in rows if "val/v2t_R@1" in r]
    assert len(val) == 2 and all(r["val/zeroshot_skipped"] == 0 and r["val/skipped"] == 0 for r in val)
    # lr_scale under DDP: the vision groups run at half the others' learning rate
    lr_rows = [{k: v for k, v in r.items() if k.startswith("lr-AdamW/")} for r in rows if "lr-AdamW/pg1" in r]
    assert len(lr_rows) == 2 * STEPS
    assert {round(v / max(r.values()), 6) for r in lr_rows for v in r.values()} == {1.0, 0.5}

    report = json.loads((run / "report.json").read_text())
    timing = json.loads((run / "timing.json").read_text())  # RunTimer (configs/sample.yaml) on rank 0 only
    assert timing["steps"] == 2 * STEPS and timing["bare_step_s"] > 0
    assert report["skipped_train_items"] == {"bad_span": 2, "missing_file": 0, "undecodable_media": 0}
    assert report["metrics"]["val/num_clips"] > 0 and "val/zeroshot_f1" in report["metrics"]
    best = torch.load(ddp / report["checkpoint"], weights_only=True)
    exported, _, _ = surgclip.load(str(run / "model"), device="cpu")
    init = surgclip.create_model("tiny", seed=0, **TINY)
    for key, value in exported.state_dict().items():
        assert torch.equal(value, best["state_dict"][f"model.{key}"]), key
        if key.startswith("text_encoder."):  # frozen: still the initial weights
            assert torch.equal(value, init.state_dict()[key]), key
    assert not torch.equal(exported.state_dict()["vision_proj.weight"], init.state_dict()["vision_proj.weight"])

    _cli(ddp, *common, "--trainer.max_epochs", "3", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), devices=2)
    resumed = _metrics(ddp / "runs" / "t" / "version_1")
    _cli(single, *common, "--trainer.max_epochs", "3")
    one = _series(_metrics(single / "runs" / "t" / "version_0"), "train/loss")

    # zero-shot is scored on rank 0 over the whole folder: the same numbers as one process at each epoch
    one_val = [r for r in _metrics(single / "runs" / "t" / "version_0") if "val/zeroshot_accuracy" in r]
    for key in ("val/zeroshot_accuracy", "val/zeroshot_f1"):
        assert [r[key] for r in val] == pytest.approx([r[key] for r in one_val[:2]], abs=1e-6), key
    two = {**_series(rows, "train/loss"), **_series(resumed, "train/loss")}
    assert sorted(two) == sorted(one) == list(range(3 * STEPS))
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5), (step, two, one)
    assert len(set(one.values())) == len(one)  # the curve moves: a stuck loss would match trivially

