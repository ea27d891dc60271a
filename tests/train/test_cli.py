"""End to end: ``surgclip train -c configs/base.yaml -c configs/sample.yaml`` on a small sample, then load the export."""
import json
import shlex

import numpy as np
import pytest
import torch

import surgclip
from conftest import REPO
from surgclip.cli import main as cli_main
from surgclip.data.datamodule import SurgLaViDataModule
from surgclip.datasets import load_benchmark, load_protocol
from surgclip.datasets.protocols import get_prompts
from surgclip.evaluation.metrics import retrieval_chance, retrieval_metrics
from surgclip.evaluation.zeroshot import evaluate_zero_shot
from surgclip.train.cli import train_main

BASE, CONFIG = str(REPO / "configs" / "base.yaml"), str(REPO / "configs" / "sample.yaml")


@pytest.mark.slow
def test_train_exports_and_reports(small_sample, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = train_main(["-c", BASE, "-c", CONFIG, "--data.root", str(small_sample), "--data.num_workers", "0",
                     "--data.batch_size", "8", "--model.zeroshot.root", str(small_sample / "cholec80"),
                     "--model.zeroshot.stride_s", "4", "--trainer.max_epochs", "2",
                     "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_train_batches", "3"])
    assert rc == 0
    run = next((tmp_path / "runs" / "sample").glob("version_*"))
    report = json.loads((run / "report.json").read_text())
    metrics = report["metrics"]
    # the report's numbers are those of the exported weights: recompute them from the export
    model, _, tokenizer = surgclip.load(str(run / "model"), device="cpu")
    dm = SurgLaViDataModule(root=str(small_sample), read_from="frames", num_frames=model.num_frames, batch_size=8)
    dm.set_model(tokenizer, model.preprocess_cfg.to_dict())
    dm.setup()
    video, text, captions = [], [], []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            video.append(model.encode_video(batch["video"]))
            text.append(model.encode_text(batch["tokens"]))
            captions += batch["caption"]
    sim = torch.cat(video) @ torch.cat(text).T
    groups = np.unique(captions, return_inverse=True)[1]
    assert metrics["val/num_clips"] == len(captions)
    for direction, s in (("v2t", sim), ("t2v", sim.T)):
        for key, value in retrieval_metrics(s, groups).items():
            assert metrics[f"val/{direction}_{key}"] == pytest.approx(value, abs=1e-4), (direction, key)
    assert report["chance"]["val/v2t_R@1"] == pytest.approx(retrieval_chance(groups)["R@1"])
    table = load_benchmark("cholec80", small_sample / "cholec80", split="all", eval_fps=1 / 4)
    zs = evaluate_zero_shot(model, tokenizer, table, get_prompts(load_protocol("cholec80"), "camma", table.classes),
                            num_frames=model.num_frames, mode="centered", stride_s=0.5)
    assert metrics["val/zeroshot_accuracy"] == pytest.approx(zs.metrics["accuracy"])
    # the command the report prints repeats that scoring through the CLI
    command = shlex.split(report["zeroshot_command"])
    assert command[:3] == ["surgclip", "eval", "zeroshot"]
    assert report["zeroshot_command"] in (run / "report.md").read_text()
    assert cli_main(command[1:] + ["--out", str(tmp_path / "zs")]) == 0
    again = json.loads((tmp_path / "zs" / "zeroshot.json").read_text())["metrics"]
    assert again["accuracy"] == pytest.approx(metrics["val/zeroshot_accuracy"])
    assert again["f1"] == pytest.approx(metrics["val/zeroshot_f1"])
    assert report["chance"]["val/zeroshot_accuracy"] == pytest.approx(1 / 7)
    assert (run / "report.md").read_text().count("|") > 10
    assert (run / "loss_curve.png").stat().st_size > 1000
    assert list((run / "checkpoints").glob("*.ckpt"))
    out = capsys.readouterr().out
    assert "zero-shot phase accuracy" in out and "chance" in out

    model, _, tokenizer = surgclip.load(str(run / "model"), device="cpu")
    ckpt = torch.load(report["checkpoint"], weights_only=True)["state_dict"]
    for key, value in model.state_dict().items():  # the export holds the best checkpoint's weights
        assert torch.equal(value, ckpt[f"model.{key}"]), key


def test_print_config_and_bad_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        train_main(["-c", BASE, "-c", CONFIG, "--print_config"])
    assert stop.value.code == 0
    printed = capsys.readouterr().out
    assert "model: tiny" in printed and "class_path: surgclip.train.callbacks.ExportAndReport" in printed
    rc = train_main(["-c", BASE, "-c", CONFIG, "--model.model", "SurgCLIP-Z", "--data.root", str(tmp_path / "none")])
    assert rc == 1
    assert "unknown model 'SurgCLIP-Z'" in capsys.readouterr().err
