"""GraSP: the COCO-style reader on a small file (phases, instruments under either key)."""
import json

import pytest

from surgclip.datasets.grasp import read_grasp_json
from surgclip.datasets.table import LabelFileError


def test_grasp_reader_fixture(tmp_path):
    grasp = tmp_path / "grasp.json"
    grasp.write_text(json.dumps({
        "phases_categories": [{"id": 1, "name": "p1"}, {"id": 2, "name": "p2"}],
        "instruments_categories": [{"id": 1, "name": "i1"}, {"id": 2, "name": "i2"}, {"id": 3, "name": "i3"}],
        "images": [{"id": 1, "file_name": "CASE001/00000.jpg"}, {"id": 2, "file_name": "CASE001/00030.jpg"}],
        "annotations": [{"image_id": 1, "phases": 2, "category_id": 3}, {"image_id": 2, "phases": 1, "category_id": 1},
                        {"image_id": 2, "phases": 1, "category_id": 2}]}))
    p = read_grasp_json(grasp, "phases", frame_fps=30)
    assert p.labels.tolist() == [1, 0] and p.time_s.tolist() == [0.0, 1.0] and p.video[0] == "CASE001"
    i = read_grasp_json(grasp, "instruments")
    assert i.targets.tolist() == [[0, 0, 1], [1, 1, 0]]
    # the released short-term file names the instruments COCO "categories" (TAPIS renames them)
    released = json.loads(grasp.read_text())
    released["categories"] = released.pop("instruments_categories")
    grasp.write_text(json.dumps(released))
    assert read_grasp_json(grasp, "instruments").targets.tolist() == [[0, 0, 1], [1, 1, 0]]
    del released["categories"]
    grasp.write_text(json.dumps(released))
    with pytest.raises(LabelFileError, match=r"grasp.json: no instruments_categories or categories"):
        read_grasp_json(grasp, "instruments")
