"""Protocols shipped in the package: prompt sets per task, official splits and class lists, and
prompt files that do not fit the classes."""
import json

import pytest

from conftest import PHASES
from surgclip import datasets as D
from surgclip.datasets import protocols as P


def test_protocols_ship_in_the_package_with_two_prompt_sets_per_task():
    import surgclip

    assert P.PROTOCOL_DIR.parent == __import__("pathlib").Path(surgclip.__file__).parent
    assert not hasattr(D, "EVAL_DIR") and not hasattr(P, "EVAL_DIR")
    for path in sorted(P.PROTOCOL_DIR.glob("*.json")):
        protocol = json.loads(path.read_text())
        assert protocol["layout"], path.name
        for task, spec in (protocol.get("tasks") or {}).items():
            classes = P.task_classes(protocol, task)
            sets = protocol[spec["prompts"]]
            assert {"descriptive"} <= set(sets), (path.name, task)
            for name in set(sets) | {"names"}:
                assert len(P.get_prompts(protocol, name, classes, key=spec["prompts"])) == len(classes)


def test_official_splits_and_class_lists():
    c50 = D.load_protocol("cholect50")
    assert c50["splits"]["challenge-test"] == [92, 96, 103, 110, 111]
    assert sorted(sum((c50["splits"][f"fold{k}"] for k in range(1, 6)), [])) == sorted(
        c50["splits"]["train"] + c50["splits"]["val"] + c50["splits"]["test"])
    assert D.load_protocol("sarrarp50")["splits"]["test"] == list(range(41, 51))
    assert D.load_protocol("autolaparo")["splits"]["test"] == list(range(15, 22))
    mbp = D.load_protocol("bernbypass70")
    assert len(mbp["splits"]["bern"]["test"]) == 20 and len(P.task_classes(mbp, "step")) == 46
    assert P.task_classes(D.load_protocol("grasp"), "instrument")[0] == "Bipolar Forceps"  # ids 1-7 as released


def test_fewer_prompts_than_classes_says_which_classes_lack_one(tmp_path):
    protocol = D.load_protocol("autolaparo")
    classes = P.task_classes(protocol, "phase")
    short = tmp_path / "p.txt"
    short.write_text("a\nb\nc\nd\ne\n")
    with pytest.raises(ValueError, match=r"classes without a prompt \(id:name\): \['5:Suturing', '6:Washing'\]"):
        P.get_prompts(protocol, str(short), classes)
    named = tmp_path / "named.txt"
    named.write_text("Preparation\tthe start\nWashing\tthe end\n")
    with pytest.raises(ValueError, match="no prompt for classes .*'DividingLigamentAndPeritoneum'"):
        P.get_prompts(protocol, str(named), classes)


def test_prompt_count_must_match():
    protocol = D.load_protocol("cholec80")
    with pytest.raises(ValueError, match="3 prompts for 7 classes"):
        P.get_prompts({"name": "x", "prompts": {"p": ["a", "b", "c"]}}, "p", PHASES)
    assert len(P.get_prompts(protocol, "surgclip", PHASES)) == 7
