"""The compressed (IVF-PQ + exact re-rank) clip index on small data, checked against brute-force search."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from surgclip.evaluation import index as index_mod
from surgclip.evaluation.index import ClipIndex, IndexError_, exact_search, recall_at_k
from surgclip.evaluation.index_pq import PQ_MIN_CLIPS

DIM = 16
PER = 1000
FP = {"model": "synthetic", "config_hash": "0" * 16, "embed_dim": DIM, "weights_hash": "0" * 64}
OLD = Path(__file__).parent / "data" / "index_v2_ivf"  # written by surgclip before the PQ index (kind ivf)


def clustered(n, d=DIM, seed=0, clusters=40):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, d)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def noisy(x, seed=1, noise=0.1):
    rng = np.random.default_rng(seed)
    q = x + noise * rng.standard_normal(x.shape).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def spans(n):
    return [(2.0 * i, 2.0 * i + 4) for i in range(n)]


def grow(path, x, kind="pq", fp=FP, prefix="v"):
    ix = ClipIndex(path, fingerprint=fp, kind=kind)
    for v in range(0, len(x), PER):
        ix.add_video(f"{prefix}{v // PER:03d}", x[v:v + PER], spans(len(x[v:v + PER])))
    return ix


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A PQ index trained at PQ_MIN_CLIPS clips, then grown by two more videos: (path, all vectors)."""
    x = clustered(PQ_MIN_CLIPS + 2 * PER)
    path = tmp_path_factory.mktemp("pq") / "ix"
    grow(path, x)
    return path, x


def test_pq_search_reaches_recall_against_brute_force_with_exact_scores(built):
    path, x = built
    ix = ClipIndex(path)
    assert ix.active_kind() == "pq" and ix.meta["pq"]["trained_on"] == PQ_MIN_CLIPS and len(ix) == len(x)
    rng = np.random.default_rng(5)
    ids = rng.choice(len(x), 100, replace=False)
    q = noisy(x[ids])
    _, exact = exact_search(q, x, 10)
    hits = ix.search(q, 10)
    got = np.array([[h["id"] for h in row] for row in hits])
    assert recall_at_k(got, exact) >= 0.95
    # re-ranked exactly: each score is the float inner product, best first
    for qi, row in enumerate(hits):
        s = np.array([h["score"] for h in row])
        np.testing.assert_allclose(s, x[[h["id"] for h in row]] @ q[qi], rtol=1e-5, atol=1e-6)
        assert np.all(np.diff(s) <= 1e-7)
    # the videos appended after training (encoded one by one) are found too
    late = ids[ids >= PQ_MIN_CLIPS]
    assert late.size
    assert recall_at_k(np.array([[h["id"] for h in row] for row in ix.search(x[late], 1)]), late[:, None]) == 1.0
    h = hits[0][0]
    c = ix.clip(h["id"])
    assert (h["video"], h["start"], h["end"]) == (c["video"], c["start"], c["end"])


def test_exact_scan_equals_brute_force(built):
    path, x = built
    q = noisy(x[:20])
    s, i = ClipIndex(path).exact_scan(q, 7)
    es, ei = exact_search(q, x, 7)
    np.testing.assert_array_equal(i, ei)
    np.testing.assert_allclose(s, es, rtol=1e-5)


def test_video_filter_is_exact_over_those_videos(built):
    path, x = built
    ix = ClipIndex(path)
    rows = np.r_[3 * PER:4 * PER, (len(x) // PER - 1) * PER:len(x)]
    q = noisy(x[[5, 3 * PER + 7]])
    hits = ix.search(q, 5, videos={"v003", f"v{len(x) // PER - 1:03d}"})
    _, e = exact_search(q, x[rows], 5)
    assert [[h["id"] for h in r] for r in hits] == rows[e].tolist()
    assert ix._emb is None  # the floats were never loaded whole


def test_adding_a_video_encodes_only_its_own_clips(built, tmp_path, monkeypatch):
    path, x = built
    shutil.copytree(path, tmp_path / "ix")
    ix = ClipIndex(tmp_path / "ix", fingerprint=FP)
    encoded = []
    real = ix._pq_encode
    monkeypatch.setattr(ix, "_pq_encode", lambda v: encoded.append(len(v)) or real(v))
    monkeypatch.setattr(ix, "iter_shard_blocks", lambda *a, **k: pytest.fail("a full pass over the shards"))
    monkeypatch.setattr(ix, "embeddings", lambda: pytest.fail("all floats loaded"))
    new = clustered(37, seed=7)
    ix.add_video("new", new, spans(37))
    assert encoded == [37]
    reopened = ClipIndex(tmp_path / "ix")
    assert reopened.meta["pq"]["trained_on"] == PQ_MIN_CLIPS  # no retraining
    hits = reopened.search(new[:3], 1)
    assert [h[0]["video"] for h in hits] == ["new"] * 3


def test_crash_during_pq_training_keeps_the_previous_index(tmp_path, monkeypatch):
    """A writer killed after writing the new quantizer and codes but before the manifest: readers see the
    previous (exact) index, the next writer removes the orphans and trains again."""
    x = clustered(PQ_MIN_CLIPS)
    path = tmp_path / "ix"
    grow(path, x[:-PER])
    before = (path / "manifest.json").read_bytes()

    def killed(*a, **k):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(ClipIndex, "_calibrate_pq", killed)
    with pytest.raises(KeyboardInterrupt):
        ClipIndex(path, fingerprint=FP).add_video("last", x[-PER:], spans(PER))
    monkeypatch.undo()
    assert (path / "manifest.json").read_bytes() == before
    assert (path / "pq-0.faiss").is_file() and list(path.glob("shards/*.pq0.npy"))  # written, not named
    ix = ClipIndex(path)
    assert ix.active_kind() == "exact" and len(ix) == len(x) - PER
    removed = ClipIndex(path, fingerprint=FP).cleanup()
    assert "pq-0.faiss" in removed and not list(path.glob("shards/*.pq0.npy"))
    ix = ClipIndex(path, fingerprint=FP)
    ix.add_video("last", x[-PER:], spans(PER))
    assert ClipIndex(path).active_kind() == "pq"
    q = noisy(x[:50])
    got = np.array([[h["id"] for h in r] for r in ClipIndex(path).search(q, 10)])
    assert recall_at_k(got, exact_search(q, x, 10)[1]) >= 0.95


def test_codes_not_matching_the_manifest_are_an_error_naming_both(built, tmp_path):
    path, _ = built
    bad = tmp_path / "ix"
    shutil.copytree(path, bad)
    meta = json.loads((bad / "manifest.json").read_text())
    shard = meta["shards"][2]
    code_file = bad / "shards" / f"{shard['id']:06d}.pq{shard['pq']}.npy"
    # a crash between writes or a foreign file: right checksum recorded, wrong shape
    import hashlib
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((shard["clips"] - 1, meta["pq"]["code_bytes"]), np.uint8))
    code_file.write_bytes(buf.getvalue())
    shard["sha256"]["pq"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (bad / "manifest.json").write_text(json.dumps(meta))
    with pytest.raises(IndexError_, match=rf"{code_file.name}.*\({shard['clips'] - 1}, .*manifest.json says uint8 "
                                          rf"\({shard['clips']}, "):
        ClipIndex(bad).search(np.ones(DIM, np.float32))
    # bytes changed after the manifest was written
    code_file.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(IndexError_, match=rf"{code_file.name} does not match the sha256 recorded in .*manifest.json"):
        ClipIndex(bad).search(np.ones(DIM, np.float32))
    # a foreign quantizer file with its checksum recorded
    import faiss

    flat = faiss.serialize_index(faiss.IndexFlatIP(DIM)).tobytes()
    (bad / f"pq-{meta['pq']['gen']}.faiss").write_bytes(flat)
    meta["pq"]["sha256"] = hashlib.sha256(flat).hexdigest()
    (bad / "manifest.json").write_text(json.dumps(meta))
    with pytest.raises(IndexError_, match=r"pq-0.faiss \(IndexFlatIP.*is not the trained, empty IVF-PQ index "
                                          r".*manifest.json names"):
        ClipIndex(bad).search(np.ones(DIM, np.float32))


def test_an_index_written_before_pq_opens_and_grows_into_pq(tmp_path):
    """The committed fixture was written by the previous surgclip (format 2, kind ivf, no PQ fields)."""
    path = tmp_path / "ix"
    shutil.copytree(OLD, path)
    meta = json.loads((path / "manifest.json").read_text())
    assert "pq" not in meta and meta["ivf"] is not None
    old = ClipIndex(path)
    assert old.active_kind() == "ivf" and len(old) == 200
    x_old = old.embeddings().copy()
    q = noisy(x_old[:30])
    got = np.array([[h["id"] for h in r] for r in old.search(q, 5)])
    assert recall_at_k(got, exact_search(q, x_old, 5)[1]) >= 0.95
    fp = {k: meta[k] for k in ("model", "config_hash", "embed_dim", "weights_hash")}
    ix = ClipIndex(path, fingerprint=fp, kind="pq")
    x_new = clustered(PQ_MIN_CLIPS, d=meta["embed_dim"], seed=3)
    for v in range(0, len(x_new), 2 * PER):
        ix.add_video(f"new{v}", x_new[v:v + 2 * PER], spans(2 * PER))
    x = np.concatenate([x_old, x_new])
    grown = ClipIndex(path)
    assert grown.active_kind() == "pq" and grown.meta["ivf"] is None and len(grown) == len(x)
    assert grown.clip(0)["video"] == "old0" and grown.video_info()["old0"]["path"] == "/videos/old0.mp4"
    q = noisy(x[::211])
    got = np.array([[h["id"] for h in r] for r in grown.search(q, 10)])
    assert recall_at_k(got, exact_search(q, x, 10)[1]) >= 0.95
    assert "ivf-0.faiss" in ClipIndex(path, fingerprint=fp).cleanup()  # the replaced IVF files


def test_auto_switches_to_pq_above_its_threshold_and_drops_ivf(tmp_path, monkeypatch):
    monkeypatch.setattr(index_mod, "AUTO_IVF_MIN_CLIPS", 5 * PER)
    monkeypatch.setattr(index_mod, "AUTO_PQ_MIN_CLIPS", PQ_MIN_CLIPS + PER)
    x = clustered(PQ_MIN_CLIPS + PER)
    kinds = []
    ix = ClipIndex(tmp_path / "ix", fingerprint=FP, kind="auto")
    for v in range(0, len(x), PER):
        ix.add_video(f"v{v}", x[v:v + PER], spans(PER))
        kinds.append(ix.active_kind())
    assert kinds[3:6] == ["exact", "ivf", "ivf"] and kinds[-2:] == ["ivf", "pq"]
    assert ClipIndex(tmp_path / "ix").meta["ivf"] is None


def test_kind_pq_on_too_few_clips_explains_the_minimum(tmp_path, capsys):
    from helpers import write_video

    from surgclip.cli import main

    write_video(tmp_path / "v0.mp4", seconds=3, fps=4, size=32, seed=0)
    assert main(["index", str(tmp_path / "v0.mp4"), "--index", str(tmp_path / "ix"), "--kind", "pq", "--model", "tiny",
                 "--num-frames", "2", "--window-s", "2", "--stride-s", "1"]) == 0
    err = capsys.readouterr().err
    assert f"--kind pq needs at least {PQ_MIN_CLIPS} clips" in err and "searched exactly" in err
    assert ClipIndex(tmp_path / "ix").active_kind() == "exact"


def test_serve_engine_answers_on_a_pq_index_with_video_filter(tmp_path, tiny_model):
    """The search engine of ``surgclip serve`` on a compressed index: kind and size on the page's info, text
    search, the video filter and "more like this", each equal to brute force over the stored floats."""
    from surgclip.evaluation.index import model_fingerprint
    from surgclip.serve.engine import SearchEngine

    model, _, tokenizer = tiny_model
    fp = model_fingerprint(model)
    d = fp["embed_dim"]
    x = clustered(PQ_MIN_CLIPS, d=d, seed=11)
    grow(tmp_path / "ix", x, fp=fp)
    engine = SearchEngine(model, tokenizer, ClipIndex(tmp_path / "ix", fingerprint=fp), "tiny")
    info = engine.describe()
    assert (info["index_kind"], info["num_clips"], info["num_videos"]) == ("pq", len(x), len(x) // PER)
    text = engine.encode_text("clipping the cystic duct")
    _, e = exact_search(text[None], x, 5)
    assert recall_at_k([[h["id"] for h in engine.search("clipping the cystic duct", k=5)["hits"]]], e) >= 0.8
    got = engine.search("clipping the cystic duct", k=5, videos=["v002"])["hits"]
    _, e = exact_search(text[None], x[2 * PER:3 * PER], 5)
    assert [h["id"] for h in got] == (e[0] + 2 * PER).tolist() and {h["video"] for h in got} == {"v002"}
    similar = engine.similar(1234, k=3)["hits"]
    _, e = exact_search(x[[1234]], x, 4)
    assert [h["id"] for h in similar] == [i for i in e[0] if i != 1234][:3]
