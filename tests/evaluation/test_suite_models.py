"""``surgclip eval --suite --model A,B,C``: one table, a row per model; rows whose files are absent
or that fail keep their row with the reason; each model's prompt sets; published numbers labelled."""
import json
import re

import pytest
import torch

import surgclip
from surgclip.cli import main
from surgclip.evaluation.suite import SuiteError, parse_models
from helpers import SMALL_OVERRIDES

FAST = ["--num-frames", "2", "--limit", "3"]


@pytest.fixture()
def offline_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SURGCLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path / "cache"


def _suite(tmp_path, small_sample, entries):
    path = tmp_path / "suite.yaml"
    lines = ["entries:"] + [f"  - {{benchmark: {b}, task: {t}, root: {small_sample / 'benchmarks' / f}}}"
                            for b, t, f in entries]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_three_row_table_rows_without_weights_say_what_they_need(small_sample, tmp_path, offline_empty_cache):
    out = tmp_path / "out"
    rc = main(["eval", "--suite", "surglavi", "--data-root", str(small_sample / "benchmarks"), "--out", str(out),
               "--model", "tiny,PeskaVLP,MedSigLIP", "--published"] + FAST)
    assert rc == 0
    report = json.loads((out / "table.json").read_text())
    rows = {r["model"]: r for r in report["rows"]}
    assert list(rows) == ["tiny", "PeskaVLP", "MedSigLIP"]
    assert rows["tiny"]["status"] == "ran" and len(rows["tiny"]["cells"]) == len(report["columns"])
    assert rows["PeskaVLP"]["status"] == "needs files" and "PeskaVLP.pth" in rows["PeskaVLP"]["reason"]
    assert str(offline_empty_cache / "PeskaVLP.pth") in rows["PeskaVLP"]["reason"]
    assert rows["MedSigLIP"]["status"] == "needs files" and "google/medsiglip-448" in rows["MedSigLIP"]["reason"]
    md = (out / "table.md").read_text()
    table = [l for l in md.splitlines() if l.startswith("| ")][1:]
    assert [l.split("|")[1].strip() for l in table] == ["tiny", "PeskaVLP", "PeskaVLP (published)", "MedSigLIP",
                                                        "MedSigLIP (published)"]  # none published for tiny
    assert table[2].split("|")[2].strip() == "51.43 / 39.39"  # the README's PeskaVLP Cholec80 cell
    assert table[2].split("|")[-2].strip() == "n/a"  # the README has no SurgLaVi-JSON column
    assert "not computed here" in md and "NEEDS FILES" in md


def test_a_camma_model_row_uses_camma_prompts_one_frame_and_its_own_scores(small_sample, tmp_path):
    source = surgclip.create_model("PeskaVLP", **SMALL_OVERRIDES["PeskaVLP"])
    surgclip.save_pretrained(source, tmp_path / "peskavlp")
    suite = _suite(tmp_path, small_sample, [("cholec80", "phase", "cholec80"), ("grasp", "phase", "grasp")])
    out = tmp_path / "out"
    assert main(["eval", "--suite", str(suite), "--out", str(out), "--limit", "2",
                 "--model", f"tiny,{tmp_path / 'peskavlp'}"]) == 0
    report = json.loads((out / "table.json").read_text())
    camma = report["rows"][1]
    cells = {c["column"]: c for c in camma["cells"]}
    assert cells["cholec80 phase"]["prompt_set"] == "camma"  # CAMMA's class prompts where the task has them
    assert cells["grasp phase"]["prompt_set"] == "descriptive"  # else the task's default
    assert {c["num_frames"] for c in camma["cells"]} == {1}  # their protocol: one frame
    assert {c["prompt_set"] for c in report["rows"][0]["cells"]} == {"camma", "descriptive"}  # tiny: the defaults
    assert camma["checkpoint"] == "params-sha256:" + surgclip.checkpoint.weights_hash(source)
    # the cell's scores are this model's: the written predictions equal a direct evaluation
    from surgclip import datasets as D
    from surgclip.datasets.protocols import task_prompts
    from surgclip.evaluation.predictions import read_predictions
    from surgclip.evaluation.zeroshot import evaluate_zero_shot

    model, _, tok = surgclip.load(str(tmp_path / "peskavlp"), device="cpu")
    protocol = D.load_protocol("cholec80")
    table = D.load_benchmark("cholec80", small_sample / "benchmarks" / "cholec80", split="test", task="phase")
    table = table.limit_per_video(2)
    prompts, _ = task_prompts(protocol, "phase", "camma", table)
    ref = evaluate_zero_shot(model, tok, table, prompts)
    (path,) = cells["cholec80 phase"]["predictions"]
    written = read_predictions(path, len(table.classes))
    assert written.scores.shape == ref.scores[ref.valid].shape
    assert abs(written.scores - ref.scores[ref.valid]).max() < 1e-5


def test_a_model_failing_to_load_fails_its_row_not_the_table(small_sample, tmp_path):
    surgclip.save_pretrained(surgclip.create_model("tiny", **SMALL_OVERRIDES["tiny"]), tmp_path / "broken")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"not a safetensors file")
    suite = _suite(tmp_path, small_sample, [("cholec80", "phase", "cholec80")])
    out = tmp_path / "out"
    assert main(["eval", "--suite", str(suite), "--out", str(out), "--limit", "2", "--num-frames", "2",
                 "--model", f"{tmp_path / 'broken'},tiny"]) == 1
    report = json.loads((out / "table.json").read_text())
    broken, tiny = report["rows"]
    assert broken["status"] == "failed to load" and "model.safetensors" in broken["reason"]
    assert tiny["status"] == "ran" and len(tiny["cells"]) == 1
    assert "FAILED TO LOAD" in (out / "table.md").read_text()


def test_unknown_model_lists_the_known_ones(small_sample, tmp_path, capsys):
    with pytest.raises(SuiteError, match=r"unknown model 'SurgVLP2'.*known models: .*CLIP.*HecVL.*MedSigLIP.*PeskaVLP"):
        parse_models("tiny,SurgVLP2")
    assert main(["eval", "--suite", "surglavi", "--data-root", str(small_sample / "benchmarks"),
                 "--out", str(tmp_path), "--model", "tiny,SurgVLP2"]) == 1
    assert re.search(r"unknown model 'SurgVLP2'", capsys.readouterr().err)
    assert parse_models("SurgVLP=/w/SurgVLP.pth, CLIP") == [("SurgVLP", "/w/SurgVLP.pth"), ("CLIP", None)]


def test_linear_probe_and_coop_take_a_camma_model_and_coop_names_what_it_cannot_take(small_sample, tmp_path, capsys):
    from test_baselines import _tiny_siglip

    surgclip.save_pretrained(surgclip.create_model("HecVL", **SMALL_OVERRIDES["HecVL"]), tmp_path / "hecvl")
    bench = small_sample / "benchmarks" / "autolaparo"
    common = ["--benchmark", "autolaparo", "--root", str(bench), "--seeds", "0"]
    assert main(["eval", "linear-probe", *common, "--limit", "3", "--model", str(tmp_path / "hecvl"), "--percents", "100",
                 "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "lp")]) == 0
    probe = json.loads((tmp_path / "lp" / "linear_probe.json").read_text())
    assert probe["metrics"]["100.0"]["runs"][0]["num_train_frames"] > 0
    assert main(["eval", "coop", *common, "--model", str(tmp_path / "hecvl"), "--shots", "1", "--epochs", "2",
                 "--n-ctx", "2", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "coop")]) == 0
    assert (tmp_path / "coop" / "coop.json").is_file()
    _tiny_siglip(tmp_path / "siglip")
    assert main(["eval", "coop", *common, "--model", f"MedSigLIP={tmp_path / 'siglip'}", "--shots", "1",
                 "--epochs", "2", "--cache", str(tmp_path / "cache2"), "--out", str(tmp_path / "coop2")]) == 1
    assert "CoOp needs a text tower that takes token embeddings" in capsys.readouterr().err
