"""CVS zero-shot on an Endoscapes2023-layout fixture: loading, metrics against sklearn, scores against a
brute-force pair softmax, errors naming the file, and the ``surgclip cvs`` command."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import average_precision_score, balanced_accuracy_score

from surgclip.cli import main
from surgclip.evaluation.cvs import (PROMPT_SETS, EndoscapesError, balanced_accuracy, cvs_metrics, evaluate_cvs,
                                     load_endoscapes_cvs)
from surgclip.transform import ClipTransform

VOTES = [0, 1 / 3, 2 / 3, 1.0, 0.5]


@pytest.fixture(scope="module")
def endoscapes(tmp_path_factory):
    """Videos 3 (train) and 120, 121 (test); every 5 s a CVS row, plus 1-fps rows without CVS votes."""
    root = tmp_path_factory.mktemp("endoscapes")
    rng = np.random.default_rng(0)
    (root / "train_vids.txt").write_text("3.000000000000000000e+00\n")
    (root / "test_vids.txt").write_text("1.200000000000000000e+02\n1.210000000000000000e+02\n")
    lines = ["vid,frame,is_ds_keyframe,C1,C2,C3,cvs_annotator_1"]
    for vid, split in ((3, "train"), (120, "test"), (121, "test")):
        (root / split).mkdir(exist_ok=True)
        for k in range(6):
            frame = 25 * 5 * k
            c = [VOTES[(k + j + vid) % len(VOTES)] for j in range(3)]
            lines.append(f"{vid},{frame},True,{c[0]},{c[1]},{c[2]},\"[1, 0, 1]\"")
            lines.append(f"{vid},{frame + 25},False,,,,")  # a 1-fps frame without CVS annotation
            Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(root / split / f"{vid}_{frame}.jpg")
    (root / "all_metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_load_split_and_targets(endoscapes):
    table = load_endoscapes_cvs(endoscapes, "test")
    assert len(table) == 12 and set(table.video.tolist()) == {120, 121}
    assert table.path[0] == endoscapes / "test" / "120_0.jpg"
    # >= 0.5 averaged vote = achieved (2 of 3 annotators); 1/3 is not
    assert np.array_equal(table.targets, (table.votes >= 0.5).astype(np.uint8))
    assert table.targets[np.isclose(table.votes, 1 / 3)].sum() == 0 and table.targets[table.votes == 0.5].all()
    assert len(load_endoscapes_cvs(endoscapes, "train")) == 6

def test_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, (40, 3))
    scores = np.clip(targets * 0.3 + rng.random((40, 3)) * 0.7, 0, 1)
    m = cvs_metrics(targets, scores)
    for j, c in enumerate(("C1", "C2", "C3")):
        assert m[c]["AP"] == pytest.approx(average_precision_score(targets[:, j], scores[:, j]))
        assert m[c]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(targets[:, j], scores[:, j] >= 0.5))
    assert m["mAP"] == pytest.approx(np.mean([m[c]["AP"] for c in ("C1", "C2", "C3")]))
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):  # one class in truth
        assert balanced_accuracy([1, 1, 1], [1, 0, 1]) == pytest.approx(balanced_accuracy_score([1, 1, 1], [1, 0, 1]))


def test_scores_are_the_pair_softmax(endoscapes, tiny_model):
    model, _, tokenizer = tiny_model
    table = load_endoscapes_cvs(endoscapes, "test")
    res = evaluate_cvs(model, tokenizer, table, ("descriptive", "short"))
    assert res["valid"].all() and res["skipped"] == {}
    transform = ClipTransform(model.preprocess_cfg)
    with torch.no_grad():  # brute force: one frame at a time, numpy softmax
        video = np.stack([model.encode_video(transform(np.array(Image.open(p).convert("RGB"))[None])[None])[0].numpy()
                          for p in table.path])
        for name in ("descriptive", "short"):
            video_n = video / np.linalg.norm(video, axis=1, keepdims=True)
            want = np.zeros((len(video), 3))
            for j, c in enumerate(("C1", "C2", "C3")):
                text = model.encode_text(tokenizer(list(PROMPT_SETS[name][c]))).numpy()
                logits = float(model.logit_scale) * video_n @ text.T
                want[:, j] = 1 / (1 + np.exp(logits[:, 1] - logits[:, 0]))
            assert np.allclose(res["scores"][name], want, atol=1e-4)
            m = res["results"][name]
            for j, c in enumerate(("C1", "C2", "C3")):
                assert m[c]["AP"] == pytest.approx(average_precision_score(table.targets[:, j], want[:, j]), abs=1e-6)


def test_bad_input_names_the_file(endoscapes, tmp_path):
    with pytest.raises(EndoscapesError, match="val_vids.txt"):
        load_endoscapes_cvs(endoscapes, "all")
    with pytest.raises(EndoscapesError, match="all_metadata.csv not found"):
        load_endoscapes_cvs(tmp_path, "test")
    (tmp_path / "test_vids.txt").write_text("120\nabc\n")
    (tmp_path / "all_metadata.csv").write_text("vid,frame,C1,C2,C3\n120,0,0.5,1,0\n")
    with pytest.raises(EndoscapesError, match=r"test_vids.txt:2: video id 'abc'"):
        load_endoscapes_cvs(tmp_path, "test")
    (tmp_path / "test_vids.txt").write_text("120\n")
    (tmp_path / "all_metadata.csv").write_text("vid,frame,C1,C2,C3\n120,0,0.5,1.5,0\n")
    with pytest.raises(EndoscapesError, match=r"all_metadata.csv:2: C1..C3 .* in 0..1"):
        load_endoscapes_cvs(tmp_path, "test")
    (tmp_path / "all_metadata.csv").write_text("vid,frame,C1,C2,C3\n120,0,0.5,1,0\n")
    with pytest.raises(EndoscapesError, match=r"frame image not found: .*test/120_0.jpg"):
        load_endoscapes_cvs(tmp_path, "test")
    (tmp_path / "all_metadata.csv").write_text("vid,frame,C1,C3\n")
    with pytest.raises(EndoscapesError, match=r"missing column\(s\) \['C2'\]"):
        load_endoscapes_cvs(tmp_path, "test")


def test_cvs_command(endoscapes, tmp_path, capsys):
    assert main(["cvs", "--root", str(endoscapes), "--model", "tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "cvs.json").read_text())
    assert set(report["metrics"]) == {"descriptive", "short"}
    assert report["metrics"]["short"]["num_frames"] == 12 and "C3" in report["metrics"]["short"]
    assert "mAP" in capsys.readouterr().out
    assert main(["cvs", "--root", str(tmp_path / "none"), "--model", "tiny"]) == 1
