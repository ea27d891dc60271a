"""Seeded random corruption of every label-format reader (issue 10 item 6).

Each corrupted file must either parse into a ``FrameTable`` or raise ``LabelFileError`` / ``ValueError``
whose message names the file, never another exception from inside json, csv or numpy, and never
hang. The test prints how many cases it tried per reader.
"""
import json
import random

import pytest

from surgclip import datasets as D
from surgclip.datasets.cholec80 import read_cholec80_phase, read_cholec80_tool
from surgclip.datasets.cholect50 import read_cholect50_json, read_cholect50_txt
from surgclip.datasets.custom import read_classes_file, read_custom_labels
from surgclip.datasets.grasp import read_grasp_json
from surgclip.datasets.layout import read_fps_json
from surgclip.datasets.multibypass140 import read_multibypass_json
from surgclip.datasets.pathcsv import read_frame_label_csv
from surgclip.datasets.protocols import task_classes
from surgclip.datasets.sarrarp50 import read_sarrarp50
from surgclip.datasets.surglavi import read_surglavi_eval
from surgclip.datasets.table import FrameTable

PHASES = task_classes(D.load_protocol("cholec80"), "phase")
TOOLS = task_classes(D.load_protocol("cholec80"), "tool")
MBP = task_classes(D.load_protocol("multibypass140"), "phase")
SAR = task_classes(D.load_protocol("sarrarp50"), "action")
CT50 = {k: len(task_classes(D.load_protocol("cholect50"), k)) for k in ("triplet", "instrument", "verb", "target")}
CASES = 60  # per reader
BAD_NUMBERS = ["-1", "-7", "1e400", "nan", "NaN", "inf", "99999999999999999999999", "abc", "", "3.5", "0x10", "١٢"]
BAD_VALUES = [None, "x", [], {}, -1, 1e308, -1e308, True, 3.5, [1, 2], {"a": 1}, 10 ** 30, ""]


def _phase_txt():
    return "Frame\tPhase\n" + "".join(f"{i}\t{PHASES[i // 3 % 7]}\n" for i in range(12))


def _tool_txt():
    return "Frame\t" + "\t".join(TOOLS) + "\n" + "".join(f"{i * 25}\t" + "\t".join("1" if j == i % 7 else "0"
                                                                                 for j in range(7)) + "\n" for i in range(6))


def _multibypass():
    return json.dumps({"phases": [{"start": 0, "end": 4000, "label_name": "preparation", "label_id": 0},
                                  {"start": 4000, "end": 9000, "label_name": "omentum_division", "label_id": 2}],
                       "steps": []})


def _cholect50():
    return json.dumps({"fps": 1, "categories": {"triplet": {str(i): f"t{i}" for i in range(100)}},
                       "annotations": {str(f): [[f % 100, 0, 1, .1, .1, .2, .2, 1, 2, 1, -1, -1, -1, -1, 0]] for f in range(5)}})


def _grasp():
    return json.dumps({"phases_categories": [{"id": i, "name": f"p{i}"} for i in range(3)],
                       "images": [{"id": k, "file_name": f"CASE041/{k * 30:09d}.jpg", "video_name": "CASE041",
                                   "frame_num": k * 30} for k in range(4)],
                       "annotations": [{"id": k, "image_id": k, "phases": k % 3} for k in range(4)]})


def _surglavi():
    return json.dumps({"categories": [{"id": i, "name": f"c{i}", "description": f"d{i}"} for i in range(3)],
                       "images": [{"id": k, "video": "v1", "frame": k} for k in range(4)],
                       "annotations": [{"image_id": k, "category_id": k % 3} for k in range(4)]})


READERS = {  # name -> (file name, valid content, call(path))
    "cholec80_phase": ("video01-phase.txt", _phase_txt, lambda p: read_cholec80_phase(p, PHASES)),
    "cholec80_tool": ("video01-tool.txt", _tool_txt, lambda p: read_cholec80_tool(p, TOOLS)),
    "path_label_csv": ("video01.csv", lambda: "path,label\n" + "".join(f"video01_{i}.png,{i % 7 + 1}\n" for i in range(8)),
                       lambda p: read_frame_label_csv(p, PHASES, label_base=1)),
    "multibypass_json": ("BBP01.mp4.json", _multibypass, lambda p: read_multibypass_json(p, MBP, ignore=(13,))),
    "sarrarp50": ("action_discrete.txt", lambda: "".join(f"{i * 6},{i % 8}\n" for i in range(10)),
                  lambda p: read_sarrarp50(p, SAR)),
    "cholect50_json": ("VID01.json", _cholect50, lambda p: read_cholect50_json(p, CT50, "triplet")),
    "cholect50_txt": ("VID01.txt", lambda: "".join(f"{f}," + ",".join("1" if j == f else "0" for j in range(6)) + "\n"
                                                   for f in range(5)),
                      lambda p: read_cholect50_txt(p, [str(i) for i in range(6)], component="instrument")),
    "grasp_json": ("grasp_long-term_test.json", _grasp, lambda p: read_grasp_json(p, "phases")),
    "surglavi_json": ("phase.json", _surglavi, lambda p: read_surglavi_eval(p)[0]),
    "surglavi_frames_csv": ("phase_frames.csv", lambda: "video,frame\nv1,0\nv1,2\n",
                            lambda p: read_surglavi_eval(p.parent / "ok.json", p)[0]),
    "custom_labels": ("v1.csv", lambda: "second,label\n0,a\n1,b;c\n2,1\n",
                      lambda p: read_custom_labels(p, ["a", "b", "c"], 1.0, "v1", True)),
    "fps_json": ("fps.json", lambda: '{"frames_fps": 1, "label_fps": 25}', lambda p: read_fps_json(p.parent)),
    "classes_txt": ("classes.txt", lambda: "a\nb\nc\n", lambda p: read_classes_file(p)),
}


def _mutate_json_value(data, rng: random.Random):
    """Replace or delete one random node of a parsed JSON document."""
    nodes = [(None, None)]
    stack = [data]
    while stack:
        obj = stack.pop()
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
        for k, v in items:
            nodes.append((obj, k))
            stack.append(v)
    parent, key = rng.choice(nodes)
    if parent is None:
        return rng.choice(BAD_VALUES)
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[key]
    else:
        parent[key] = rng.choice(BAD_VALUES)
    return data


def corrupt(raw: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(8)
    if kind == 0:
        return raw[: rng.randrange(len(raw) + 1)]
    if kind == 1:
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))) + raw[at:]
    if kind == 2:
        at = rng.randrange(len(raw) + 1)
        return raw[:at] + rng.choice([b"\xff\xfe", b"\x80", b"\xc3\x28", b"\x00"]) + raw[at:]
    if kind == 3:
        lines = raw.split(b"\n")
        lines.pop(rng.randrange(len(lines)))
        return b"\n".join(lines)
    if kind == 4:
        text = raw.decode()
        digits = [i for i, ch in enumerate(text) if ch.isdigit()]
        if not digits:
            return raw + b"\n1,2,3"
        at = rng.choice(digits)
        end = at
        while end < len(text) and (text[end].isdigit() or text[end] == "."):
            end += 1
        return (text[:at] + rng.choice(BAD_NUMBERS) + text[end:]).encode()
    if kind == 5:
        try:
            return json.dumps(_mutate_json_value(json.loads(raw), rng)).encode()
        except (ValueError, TypeError):
            return raw.replace(b",", b";", 1)
    if kind == 6:
        return b""
    lines = raw.split(b"\n")
    i = rng.randrange(len(lines))
    lines[i] = lines[i].replace(b",", b"", 1).replace(b"\t", b" \t ", 1)
    return b"\n".join(lines)


@pytest.mark.parametrize("name", sorted(READERS))
def test_corrupted_label_files_give_named_errors(tmp_path, name):
    file_name, make, call = READERS[name]
    (tmp_path / "ok.json").write_text(_surglavi())
    path = tmp_path / file_name
    raw = make().encode()
    path.write_bytes(raw)
    assert call(path) is not None  # the seed file is valid
    rng = random.Random(f"fuzz-{name}")
    outcomes = {"parsed": 0, "error": 0}
    for case in range(CASES):
        data = corrupt(raw, rng)
        path.write_bytes(data)
        try:
            result = call(path)
        except ValueError as err:  # LabelFileError is a ValueError
            assert str(path) in str(err), (name, case, data[:80], err)
            outcomes["error"] += 1
        except Exception as err:  # noqa: BLE001 -- the point of the test
            pytest.fail(f"{name} case {case}: {type(err).__name__} from a corrupted file: {err}\n{data[:120]!r}")
        else:
            assert isinstance(result, (FrameTable, list, dict)), (name, case)
            outcomes["parsed"] += 1
    print(f"fuzz {name}: {CASES} cases, {outcomes['error']} named errors, {outcomes['parsed']} still valid")
    assert outcomes["error"] >= CASES // 4
