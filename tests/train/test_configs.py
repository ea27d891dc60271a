"""Every shipped config, composed with ``configs/base.yaml``, parses (``--print_config``) and trains one step
on the sample with CPU overrides; the per-model files hold only what differs from the base."""
import json
import sys
from pathlib import Path

import pytest

from conftest import REPO
from helpers import SMALL_OVERRIDES
from surgclip.train.cli import train_main

sys.path.insert(0, str(REPO / "tests" / "train"))  # rank_probe, named on the command line

CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml") if p.name != "base.yaml")
BASE = str(REPO / "configs" / "base.yaml")
# tiny stand-ins for each architecture; CLIP-B-16 swaps ViT-B/16 for a 1-layer open_clip ViT registered
# below (same tokenizer and context length), untrained
TINY_OPEN_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
SHRINK = {"tiny": ({**SMALL_OVERRIDES["tiny"], "num_frames": 2}, 2),
          "SurgCLIP-B": (SMALL_OVERRIDES["SurgCLIP-B"], 4),
          "CLIP-B-16": ({"open_clip": {"model": "ViT-T-16-test", "pretrained": None}, "num_frames": 2,
                         "preprocess": {"image_size": 32}}, 2)}


@pytest.fixture(scope="module", autouse=True)
def _tiny_open_clip(tmp_path_factory):
    import open_clip

    path = tmp_path_factory.mktemp("open_clip") / "ViT-T-16-test.json"
    path.write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(path)
CPU = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
       "--trainer.precision", "32-true", "--data.num_workers", "0"]


def test_configs_are_all_tested():
    assert CONFIGS == ["clip_b16.yaml", "sample.yaml", "surgclip_b.yaml"]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_prints_and_trains_one_step(name, small_sample, tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs" / name)
    with pytest.raises(SystemExit) as stop:
        train_main(["-c", BASE, "-c", config, "--print_config"])
    assert stop.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    model = printed["model"]["model"]
    overrides, frames = SHRINK[model]

    # the GPU configs have data.root: null; the paths come from the command line, as in the README
    data = ["--data.paths.db_path", str(small_sample / "captions.sqlite"),
            "--data.paths.video_root", str(small_sample / "videos"), "--data.paths.splits_file", str(small_sample / "splits.json")]
    rc = train_main(["fit", "-c", BASE, "-c", config, *CPU, *data, "--data.num_frames", str(frames), "--data.batch_size", "2",
                     "--model.model_overrides", json.dumps(overrides), "--model.zeroshot.root", "null",
                     "--trainer.fast_dev_run", "1", "--trainer.callbacks+=rank_probe.RankProbe",
                     "--trainer.callbacks.out_dir", str(tmp_path / "probe")])
    assert rc == 0, capsys.readouterr().err[-3000:]
    probe = json.loads((tmp_path / "probe" / "rank0.json").read_text())
    assert probe["global_step"] == 1 and probe["batches"] == [[2, 0]]


@pytest.mark.parametrize("name", CONFIGS)
def test_model_configs_hold_only_what_differs_from_the_base(name):
    import yaml

    base = yaml.safe_load(Path(BASE).read_text())
    own = yaml.safe_load((REPO / "configs" / name).read_text())
    assert isinstance(own.get("name"), str) and own["name"]
    for key in ("logger", "callbacks", "reload_dataloaders_every_n_epochs"):  # lists would replace the base's
        assert key not in own.get("trainer", {}), f"{name} repeats trainer.{key} of base.yaml"
    assert own.get("seed_everything", None) in (None,) or own["seed_everything"] != base["seed_everything"]


def test_composition_appends_callbacks_and_names_the_loggers(tmp_path, monkeypatch, capsys):
    import yaml
    from jsonargparse import Namespace

    from surgclip.train.cli import name_loggers

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        train_main(["-c", BASE, "-c", str(REPO / "configs" / "sample.yaml"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    callbacks = [c["class_path"].rsplit(".", 1)[1] for c in printed["trainer"]["callbacks"]]
    assert callbacks == ["ModelCheckpoint", "LearningRateMonitor", "ExportAndReport", "RunTimer"]
    config = Namespace(name=None, model=Namespace(model="tiny"), trainer=Namespace(logger=[
        Namespace(class_path="CSVLogger", init_args=Namespace(name=None)),
        Namespace(class_path="TensorBoardLogger", init_args=Namespace(name="mine"))]))
    name_loggers(config)
    assert [lg.init_args.name for lg in config.trainer.logger] == ["tiny", "mine"]
    config.name = "run7"
    config.trainer.logger[0].init_args.name = None
    name_loggers(config)
    assert config.trainer.logger[0].init_args.name == "run7"


def test_a_model_file_without_the_base_is_told_it_exports_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    overrides, frames = SHRINK["tiny"]
    rc = train_main(["fit", "-c", str(REPO / "configs" / "sample.yaml"), *CPU, "--data.root", "/nonexistent",
                     "--model.model_overrides", json.dumps(overrides), "--trainer.fast_dev_run", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "no surgclip.train.callbacks.ExportAndReport callback is configured" in err
    assert "compose with configs/base.yaml first" in err


def test_null_root_without_paths_names_the_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    overrides, _ = SHRINK["SurgCLIP-B"]
    rc = train_main(["fit", "-c", BASE, "-c", str(REPO / "configs" / "surgclip_b.yaml"), *CPU, "--data.paths.db_path", "x.sqlite",
                     "--model.model_overrides", json.dumps(overrides), "--trainer.fast_dev_run", "1"])
    assert rc == 1
    assert "data.root is null: give data.paths.db_path and data.paths.video_root or data.paths.frames_root" in capsys.readouterr().err


def test_fsdp_on_cpu_is_refused_clearly(tmp_path, monkeypatch, capsys):
    """Lightning 2.6 runs FSDP on GPUs only; on CPU the CLI says so (README: how FSDP was checked)."""
    monkeypatch.chdir(tmp_path)
    rc = train_main(["fit", "-c", BASE, "-c", str(REPO / "configs" / "sample.yaml"), *CPU, "--trainer.strategy", "fsdp",
                     "--trainer.devices", "2", "--data.root", str(tmp_path)])
    assert rc == 1
    assert "requires a GPU accelerator" in capsys.readouterr().err
