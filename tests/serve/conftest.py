"""Fixtures for ``surgclip serve``: a small library (videos, a frame folder, symlinks pointing out of
it) registered in a clip index whose embeddings are seeded random unit vectors (no video encoding)."""
import json
import shutil

import numpy as np
import pytest

from helpers import write_frames

FPS = 5.0


def _spans(duration: float, window: float = 4.0, stride: float = 2.0):
    return [(s, min(s + window, duration)) for s in np.arange(0.0, max(duration - window, 0.0) + 1e-9, stride)]


@pytest.fixture(scope="module")
def library(tmp_path_factory, small_sample, tiny_model):
    """{"root", "index", "outside", "secret"}: an index over

    - ``a``, ``b``: copies of two sample H.264 videos (70 s, 5 fps);
    - ``frames1``: a frame folder of 30 images (6 s at 5 fps);
    - ``evil``: a video registered at ``lib/evil/evil.mp4``, a symlink to a file outside the library;
    - ``leaky``: a frame folder whose frame 2 is a symlink to an image outside the library;
    - ``doomed``: a video copy that a test deletes while the server runs.
    """
    from surgclip.evaluation.index import ClipIndex, model_fingerprint

    base = tmp_path_factory.mktemp("serve")
    root, outside = base / "lib", base / "outside"
    outside.mkdir()
    videos = sorted((small_sample / "videos").glob("*/*.mp4"))
    for name, src in (("a", videos[0]), ("b", videos[1]), ("doomed", videos[0])):
        (root / name).mkdir(parents=True)
        shutil.copy(src, root / name / f"{name}.mp4")
    shutil.copy(videos[2], outside / "real.mp4")
    (root / "evil").mkdir()
    (root / "evil" / "evil.mp4").symlink_to(outside / "real.mp4")
    write_frames(root / "frames1", range(30), size=(24, 32), seed=1)
    write_frames(root / "leaky", range(5), size=(24, 32), seed=2)
    write_frames(outside, [99], size=(24, 32), seed=3)
    (root / "leaky" / "2.jpg").unlink()
    (root / "leaky" / "2.jpg").symlink_to(outside / "99.jpg")
    for folder in ("frames1", "leaky"):
        (root / folder / "frames.json").write_text(json.dumps({"fps": FPS}))

    model = tiny_model[0]
    index = ClipIndex(base / "index", fingerprint=model_fingerprint(model))
    rng = np.random.default_rng(0)
    for name, path, duration in (("a", root / "a" / "a.mp4", 70.0), ("b", root / "b" / "b.mp4", 70.0),
                                 ("frames1", root / "frames1", 6.0), ("evil", root / "evil" / "evil.mp4", 70.0),
                                 ("leaky", root / "leaky", 1.0), ("doomed", root / "doomed" / "doomed.mp4", 70.0)):
        spans = _spans(duration)
        emb = rng.standard_normal((len(spans), model.embed_dim)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        index.add_video(name, emb, spans, {"path": str(path), "fps": FPS})
    return {"root": root, "index": base / "index", "outside": outside, "secret": outside / "99.jpg"}


@pytest.fixture(scope="module")
def engine(library, tiny_model):
    """A SearchEngine over ``library`` with the session's tiny model (the one that built the index)."""
    from surgclip.evaluation.index import ClipIndex, model_fingerprint
    from surgclip.serve.engine import SearchEngine

    model, _, tokenizer = tiny_model
    return SearchEngine(model, tokenizer, ClipIndex(library["index"], fingerprint=model_fingerprint(model)), "tiny")


@pytest.fixture(scope="module")
def client(engine):
    from fastapi.testclient import TestClient

    from surgclip.serve.app import create_app

    with TestClient(create_app(engine)) as c:
        yield c
