"""The registry: every (benchmark, task) loaded from its official layout through ``load_benchmark``,
fps.json forms, bad input named by path/row."""
import shutil
import warnings

import pytest

from surgclip import datasets as D
from surgclip.datasets import protocols as P
from surgclip.datasets.layout import read_fps_json
from surgclip.datasets.table import LabelFileError

ROWS = [  # (benchmark, sample folder, task, split, expected classes, multilabel)
    ("cholec80", "cholec80", "phase", "test", 7, False),
    ("cholec80", "cholec80", "tool", "test", 7, True),
    ("autolaparo", "autolaparo", "phase", "test", 7, False),
    ("strasbypass70", "multibypass140", "phase", "all", 13, False),
    ("strasbypass70", "multibypass140", "step", "all", 46, False),
    ("bernbypass70", "multibypass140", "phase", "test", 13, False),
    ("bernbypass70", "multibypass140", "step", "test", 46, False),
    ("grasp", "grasp", "phase", "test", 11, False),
    ("grasp", "grasp", "step", "test", 21, False),
    ("grasp", "grasp", "instrument", "test", 7, True),
    ("sarrarp50", "sarrarp50", "action", "test", 8, False),
    ("cholect50", "cholect50", "triplet", "test", 100, True),
    ("cholect50", "cholect50", "instrument", "test", 6, True),
    ("cholect50", "cholect50", "verb", "test", 10, True),
    ("cholect50", "cholect50", "target", "test", 15, True),
    ("surglavi", "surglavi", "phase", "all", 7, False),
]


@pytest.mark.parametrize("name,folder,task,split,num_classes,multilabel", ROWS)
def test_every_benchmark_task_loads_from_the_sample_layout(bench_root, name, folder, task, split, num_classes, multilabel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = D.load_benchmark(name, bench_root / folder, split=split, task=task)
    assert len(table.classes) == num_classes and table.multilabel == multilabel
    assert len(table) > 0 and set(table.sources) == set(table.videos())
    assert all(s.path.exists() for s in table.sources.values())
    prompts, set_name = P.task_prompts(D.load_protocol(name), task, None, table)
    assert len(prompts) == num_classes and set_name in ("camma", "descriptive")


def test_fps_json_frames_fps_form_is_accepted_by_cholec80(bench_root, tmp_path):
    """issue 10: {"frames_fps": 1} (the documented form) used to crash the Cholec80 loader."""
    root = tmp_path / "c80"
    shutil.copytree(bench_root / "cholec80" / "phase_annotations", root / "phase_annotations")
    for vid in ("video49", "video50"):
        (root / "frames" / vid).mkdir(parents=True)
        for s in range(3):
            (root / "frames" / vid / f"{s}.jpg").write_bytes(b"")
    (root / "fps.json").write_text('{"frames_fps": 1}')
    table = D.load_benchmark("cholec80", root, split="test", label_fps=5)
    assert {s.fps for s in table.sources.values()} == {1.0}
    assert read_fps_json(root).get("label_fps") is None
    (root / "fps.json").write_text('{"frames_fps": "fast"}')
    with pytest.raises(ValueError, match="fps.json frames_fps: fps must be a number"):
        D.load_benchmark("cholec80", root, split="test", label_fps=5)


@pytest.mark.parametrize("folder", ["autolaparo", "sarrarp50", "multibypass140"])
def test_fps_json_frames_fps_form_is_accepted_by_every_loader(bench_root, tmp_path, folder):
    root = tmp_path / folder
    shutil.copytree(bench_root / folder, root)
    (root / "fps.json").write_text('{"frames_fps": 1}')
    name = {"multibypass140": "bernbypass70"}.get(folder, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(D.load_benchmark(name, root, split="test")) > 0


def test_missing_label_video_and_split_name_the_expected_path(bench_root, tmp_path):
    root = tmp_path / "ct50"
    shutil.copytree(bench_root / "cholect50" / "labels", root / "labels")
    with pytest.raises(FileNotFoundError, match=r"VID92\.json"):
        D.load_benchmark("cholect50", root, split="challenge-test", task="triplet")
    with pytest.raises(FileNotFoundError, match=r"video VID06: expected .*videos/VID06\.mp4 .* or .*videos/VID06/"):
        D.load_benchmark("cholect50", root, split="test", task="triplet")
    with pytest.raises(ValueError, match="no split 'nope'"):
        D.load_benchmark("cholect50", root, split="nope")
    with pytest.raises(FileNotFoundError, match=r"grasp_long-term_test\.json"):
        D.load_benchmark("grasp", tmp_path, split="test", task="phase")
    with pytest.raises(FileNotFoundError, match=r"video_41/action_discrete\.txt"):
        D.load_benchmark("sarrarp50", tmp_path, split="test")


def test_unknown_class_id_names_file_and_row(bench_root, tmp_path):
    root = tmp_path / "sar"
    shutil.copytree(bench_root / "sarrarp50", root)
    path = root / "video_41" / "action_discrete.txt"
    lines = path.read_text().splitlines()
    lines[4] = "24,9"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelFileError, match=r"video_41/action_discrete\.txt:5: unknown class id 9"):
        D.load_benchmark("sarrarp50", root, split="test")


# --------------------------------------------------------------------------- the registry itself


def test_every_dataset_module_has_the_same_surface_and_its_protocol_beside_it():
    for name, module in D.DATASETS.items():
        assert module.NAME == name
        assert callable(module.load) and (module.write_sample is None or callable(module.write_sample))
        assert isinstance(module.ALIASES, dict) and isinstance(module.PREDICTION_NAMES, dict)
        assert all(bench in [name, *module.ALIASES] for bench, _ in module.PREDICTION_NAMES)
        protocol_file = P.PROTOCOL_DIR / f"{name}.json"
        if name == "custom":
            assert not protocol_file.exists() and module.FOLDER is None
            continue
        assert protocol_file.parent == __import__("pathlib").Path(module.__file__).parent
        protocol = D.load_protocol(name)
        assert protocol["name"] == protocol["format"] == name
        for alias in module.ALIASES:
            assert D.load_protocol(alias) == protocol
    assert sorted(p.stem for p in P.PROTOCOL_DIR.glob("*.json")) == sorted(set(D.DATASETS) - {"custom"})
    mbp = D.DATASETS["multibypass140"]
    assert {a: o["site"] for a, o in mbp.ALIASES.items()} == D.load_protocol("multibypass140")["aliases"]


def test_names_folders_and_prediction_names_come_from_the_modules():
    assert D.benchmark_names() == sorted(["cholec80", "cholec80-csv", "autolaparo", "autolaparo-csv", "multibypass140",
                                          "strasbypass70", "bernbypass70", "grasp", "sarrarp50", "cholect50",
                                          "cholect50-txt", "heichole", "surglavi", "custom"])
    assert D.data_folders() == {
        "cholec80": "cholec80", "autolaparo": "autolaparo", "strasbypass70": "multibypass140",
        "bernbypass70": "multibypass140", "multibypass140": "multibypass140", "grasp": "grasp",
        "sarrarp50": "sarrarp50", "cholect50": "cholect50", "cholect50-txt": "cholect50", "heichole": "heichole",
        "surglavi": "surglavi", "cholec80-csv": "cholec80", "autolaparo-csv": "autolaparo"}
    assert D.prediction_names() == {
        ("cholec80", "phase"): "cholec80", ("cholec80", "tool"): "cholec80_tools",
        ("autolaparo", "phase"): "autolaparo",
        ("strasbypass70", "phase"): "strasbypass70", ("bernbypass70", "phase"): "bernbypass70",
        ("grasp", "phase"): "grasp_phases", ("grasp", "step"): "grasp_steps", ("grasp", "instrument"): "grasp_tools",
        ("sarrarp50", "action"): "sarrarp50", ("cholect50", "triplet"): "cholect50",
        ("heichole", "phase"): "heichole", ("heichole", "instrument"): "heichole_tools"}


def test_prediction_file_names_are_read_back_through_the_registry():
    from surgclip.evaluation.runs import dataset_name, parse_dataset_name

    for (bench, task), name in D.prediction_names().items():
        assert dataset_name(bench, task) == name
        assert parse_dataset_name(f"predictions_{name}") == (bench, task, task)
    assert dataset_name("cholect50", "verb") == "cholect50_verb"
    assert parse_dataset_name("predictions_verb_cholect50_test") == ("cholect50", "triplet", "verb")
    assert parse_dataset_name("predictions_mine") == (None, "mine", "mine")


def test_cli_suite_and_sample_take_their_lists_from_the_registry(small_sample, capsys):
    import json

    from surgclip.cli import main
    from surgclip.evaluation.suite import SURGLAVI_SUITE, load_suite

    with pytest.raises(SystemExit):
        main(["zeroshot", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert " | ".join(D.benchmark_names()) + " | a protocol JSON" in help_text
    _, entries = load_suite("surglavi", "/data")
    assert [e["root"] for e in entries] == [f"/data/{D.data_folders()[e['benchmark']]}" for e in SURGLAVI_SUITE]
    written = json.loads((small_sample / "manifest.json").read_text())["benchmarks"]["benchmarks"]
    assert written == sorted(D.sample_writers()) == sorted(p.name for p in (small_sample / "benchmarks").iterdir())


def test_unknown_names_and_custom_are_refused_with_the_known_names(tmp_path):
    with pytest.raises(ValueError, match=r"unknown benchmark 'cholec81'; known: \[.*'bernbypass70'.*'custom'"):
        D.load_benchmark("cholec81", tmp_path)
    with pytest.raises(ValueError, match="'custom' has no protocol file"):
        D.load_protocol("custom")
    with pytest.raises(ValueError, match="custom has no dataset root"):
        D.load_benchmark("custom", tmp_path, protocol={"name": "custom", "tasks": {"custom": {}}})
    with pytest.raises(ValueError, match="cholect50 has no layout 'csv'"):
        D.load_benchmark("cholect50", tmp_path, layout="csv")
