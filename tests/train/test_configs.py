"""Every shipped config parses (``--print_config``) and trains one step on the sample with CPU overrides."""
import json
import sys

import pytest

from conftest import REPO
from helpers import SMALL_OVERRIDES
from surgclip.train.cli import train_main

sys.path.insert(0, str(REPO / "tests" / "train"))  # rank_probe, named on the command line

CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
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
        train_main(["-c", config, "--print_config"])
    assert stop.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    model = printed["model"]["model"]
    overrides, frames = SHRINK[model]

    # the GPU configs have data.root: null; the paths come from the command line, as in the README
    data = ["--data.db_path", str(small_sample / "captions.sqlite"), "--data.video_root", str(small_sample / "videos"),
            "--data.splits_file", str(small_sample / "splits.json")]
    rc = train_main(["fit", "-c", config, *CPU, *data, "--data.num_frames", str(frames), "--data.batch_size", "2",
                     "--model.model_overrides", json.dumps(overrides), "--model.zeroshot_root", "null",
                     "--trainer.fast_dev_run", "1", "--trainer.callbacks+=rank_probe.RankProbe",
                     "--trainer.callbacks.out_dir", str(tmp_path / "probe")])
    assert rc == 0, capsys.readouterr().err[-3000:]
    probe = json.loads((tmp_path / "probe" / "rank0.json").read_text())
    assert probe["global_step"] == 1 and probe["batches"] == [[2, 0]]


def test_null_root_without_paths_names_the_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    overrides, _ = SHRINK["SurgCLIP-B"]
    rc = train_main(["fit", "-c", str(REPO / "configs" / "surgclip_b.yaml"), *CPU, "--data.db_path", "x.sqlite",
                     "--model.model_overrides", json.dumps(overrides), "--trainer.fast_dev_run", "1"])
    assert rc == 1
    assert "data.root is null: give data.db_path and data.video_root or data.frames_root" in capsys.readouterr().err


def test_fsdp_on_cpu_is_refused_clearly(tmp_path, monkeypatch, capsys):
    """Lightning 2.6 runs FSDP on GPUs only; on CPU the CLI says so (README: how FSDP was checked)."""
    monkeypatch.chdir(tmp_path)
    rc = train_main(["fit", "-c", str(REPO / "configs" / "sample.yaml"), *CPU, "--trainer.strategy", "fsdp",
                     "--trainer.devices", "2", "--data.root", str(tmp_path)])
    assert rc == 1
    assert "requires a GPU accelerator" in capsys.readouterr().err
