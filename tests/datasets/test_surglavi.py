"""SurgLaVi evaluation files: categories with their own prompts, and a frame list."""
import json

from surgclip.datasets.surglavi import read_surglavi_eval


def test_surglavi_reader_fixture(tmp_path):
    coco = tmp_path / "eval.json"
    coco.write_text(json.dumps({"categories": [{"id": 5, "name": "cut", "description": "scissors cut the duct"},
                                               {"id": 7, "name": "clip", "description": "a clip is applied"}],
                                "images": [{"id": 1, "video": "v", "frame": 3}, {"id": 2, "video": "v", "frame": 4}],
                                "annotations": [{"image_id": 1, "category_id": 7}, {"image_id": 2, "category_id": 5}]}))
    (tmp_path / "frames.csv").write_text("video,frame\nv,4\n")
    t, prompts = read_surglavi_eval(coco, tmp_path / "frames.csv")
    assert prompts == ["scissors cut the duct", "a clip is applied"] and t.labels.tolist() == [0]
