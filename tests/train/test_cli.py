"""End to end: ``surgclip train -c configs/sample.yaml`` on a small sample, then load the export."""
import json

import pytest
import torch

import surgclip
from conftest import REPO
from surgclip.train.cli import train_main

CONFIG = str(REPO / "configs" / "sample.yaml")


@pytest.mark.slow
def test_train_exports_and_reports(small_sample, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = train_main(["-c", CONFIG, "--data.root", str(small_sample), "--data.num_workers", "0",
                     "--data.batch_size", "8", "--model.zeroshot_root", str(small_sample / "cholec80"),
                     "--model.zeroshot_stride_s", "4", "--trainer.max_epochs", "2",
                     "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_train_batches", "3"])
    assert rc == 0
    run = next((tmp_path / "runs" / "sample").glob("version_*"))
    report = json.loads((run / "report.json").read_text())
    for key in ("val/v2t_R@1", "val/t2v_R@5"):
        assert 0.0 <= report["metrics"][key] <= 100.0, key  # percent
    for key in ("val/zeroshot_accuracy", "val/zeroshot_f1"):
        assert 0.0 <= report["metrics"][key] <= 1.0, key
    n = report["metrics"]["val/num_clips"]
    assert report["chance"]["val/v2t_R@1"] == pytest.approx(100.0 / n)
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
        train_main(["-c", CONFIG, "--print_config"])
    assert stop.value.code == 0
    printed = capsys.readouterr().out
    assert "model: tiny" in printed and "class_path: surgclip.train.callbacks.ExportAndReport" in printed
    rc = train_main(["-c", CONFIG, "--model.model", "SurgCLIP-Z", "--data.root", str(tmp_path / "none")])
    assert rc == 1
    assert "unknown model 'SurgCLIP-Z'" in capsys.readouterr().err
