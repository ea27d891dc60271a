"""Multiple-choice questions: answers against a brute-force computation (PyAV decode, cosine, argmax),
question prepended or not, entry-level errors naming file and index, and the ``surgclip mcq`` command."""
import json

import numpy as np
import pytest
import torch
from helpers import write_video

from surgclip.cli import main
from surgclip.sampling import sample_indices
from surgclip.evaluation.mcq import MCQError, evaluate_mcq, load_questions, option_texts
from surgclip.transform import ClipTransform

T = 2


QUESTIONS = [
    {"clip": {"video": "clip.mp4", "start": 0.0, "end": 2.0}, "question": "Which instrument is in use?",
     "options": ["a grasper", "a clip applier", "scissors"], "answer": 1},
    {"clip": {"video": "clip.mp4", "start": 1.5, "end": 3.9}, "question": "What is happening?",
     "options": ["dissection of the triangle", "irrigation"], "answer": 0},
    {"clip": {"video": "clip.mp4", "start": 0.2, "end": 1.0}, "question": "Is bleeding visible?",
     "options": ["yes", "no"], "answer": 1},
]


@pytest.fixture(scope="module")
def qfile(tmp_path_factory):
    root = tmp_path_factory.mktemp("mcq")
    write_video(root / "clip.mp4", 4, size=32, noise=True)
    (root / "q.json").write_text(json.dumps(QUESTIONS))
    return root / "q.json"


def _brute_force(model, tokenizer, q, with_question):
    import av

    with av.open(str(q.video)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    idx = sample_indices(q.start, q.end, 5.0, T, mode="uniform", num_frames_in_video=len(frames))
    with torch.no_grad():
        v = model.encode_video(ClipTransform(model.preprocess_cfg)(frames[idx])[None])[0].numpy()
        texts = [f"{q.question} {o}" if with_question else o for o in q.options]
        t = model.encode_text(tokenizer(texts)).numpy()
    return (v / np.linalg.norm(v)) @ (t / np.linalg.norm(t, axis=1, keepdims=True)).T


@pytest.mark.parametrize("with_question", [True, False])
def test_answers_match_brute_force(qfile, tiny_model, with_question):
    model, _, tokenizer = tiny_model
    questions = load_questions(qfile)
    res = evaluate_mcq(model, tokenizer, questions, with_question=with_question, num_frames=T)
    assert res["num_scored"] == 3 and res["skipped"] == {}
    correct = []
    for q, got in zip(questions, res["per_question"]):
        want = _brute_force(model, tokenizer, q, with_question)
        assert np.allclose(got["scores"], want, atol=1e-5)
        assert got["pred"] == int(np.argmax(want))
        correct.append(got["pred"] == q.answer)
    assert res["accuracy"] == pytest.approx(np.mean(correct))
    assert res["chance"] == pytest.approx(np.mean([1 / 3, 1 / 2, 1 / 2]))


def test_option_texts(qfile):
    q = load_questions(qfile)[0]
    assert option_texts(q, True)[1] == "Which instrument is in use? a clip applier"
    assert option_texts(q, False) == ["a grasper", "a clip applier", "scissors"]
    assert q.video == qfile.parent / "clip.mp4"  # relative to the question file


@pytest.mark.parametrize("entry,match", [
    ({"clip": {"video": "clip.mp4", "start": 0, "end": 1}, "question": "q", "options": ["a", "b"]}, r"missing field\(s\) \['answer'\]"),
    ({"clip": {"video": "clip.mp4", "start": 2, "end": 1}, "question": "q", "options": ["a", "b"], "answer": 0}, "start < end"),
    ({"clip": {"video": "clip.mp4", "start": "x", "end": 1}, "question": "q", "options": ["a", "b"], "answer": 0}, "must be numbers"),
    ({"clip": {"video": "clip.mp4", "start": 0, "end": 1}, "question": "q", "options": ["a"], "answer": 0}, "at least 2"),
    ({"clip": {"video": "clip.mp4", "start": 0, "end": 1}, "question": "q", "options": ["a", "b"], "answer": 2}, r"index 0..1, got 2"),
    ({"clip": "clip.mp4", "question": "q", "options": ["a", "b"], "answer": 0}, "'clip' must be an object"),
    ("just a string", "expected an object"),
])
def test_bad_entries_name_file_and_index(tmp_path, entry, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([QUESTIONS[0], entry]))
    with pytest.raises(MCQError, match=rf"bad.json: entry 1: .*{match}"):
        load_questions(path)


def test_bad_files(tmp_path):
    with pytest.raises(MCQError, match="not found"):
        load_questions(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(MCQError, match="x.json: not a JSON file"):
        load_questions(tmp_path / "x.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(MCQError, match="non-empty JSON list"):
        load_questions(tmp_path / "x.json")


def test_mcq_command(qfile, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["mcq", "--questions", str(qfile), "--model", "tiny", "--num-frames", str(T), "--no-question",
                 "--out", str(out)]) == 0
    report = json.loads((out / "mcq.json").read_text())
    assert report["metrics"]["num_scored"] == 3 and report["config"]["with_question"] is False
    assert "accuracy" in capsys.readouterr().out
    # a missing video is skipped and counted with its entry index; nothing scored -> exit 1
    bad = tmp_path / "missing.json"
    bad.write_text(json.dumps([dict(QUESTIONS[0], clip={"video": "gone.mp4", "start": 0, "end": 1})]))
    assert main(["mcq", "--questions", str(bad), "--model", "tiny", "--num-frames", str(T), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "entry 0 (unreadable_video)" in err and "gone.mp4" in err
    assert json.loads((out / "mcq.json").read_text())["skipped"] == {"unreadable_video": 1}
