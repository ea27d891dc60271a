"""Reading packed shards for training: the T frames of an item against the tar's members picked by the
sampling functions, determinism per (seed, epoch), damaged shards skipped and counted by reason,
training's selection against the pack's, and the same through a local S3 server (moto)."""
import importlib.util
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from surgclip.data.pack import PackSettings, pack
from surgclip.data.readers import decode_image
from surgclip.data.shards import ShardDataset, ShardError, load_index, training_rows
from surgclip.sampling import sample_indices

from .test_pack import make_corpus

SETTINGS = PackSettings(fps=4.0, min_frames=6, max_frames=12, size=32, shard_captions=8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"), n_rows=20, seed=1)


@pytest.fixture(scope="module")
def packed(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "shards"
    pack(corpus / "captions.sqlite", str(out), video_root=corpus / "videos", settings=SETTINGS, workers=1,
         progress=False)
    return out


def _stored_frames(packed: Path) -> dict[int, list[np.ndarray]]:
    """caption_id -> its stored frames, decoded from the tar members in order."""
    out = {}
    for tar_path in sorted(packed.glob("shard-*.tar")):
        with tarfile.open(tar_path) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    out[meta["caption_id"]] = [decode_image(tar.extractfile(f"{m.name[:-5]}.{k:04d}.jpg").read(), m.name)
                                               for k in range(meta["num_frames"])]
    return out


@pytest.mark.parametrize("mode", ["random", "uniform", "dynamic"])
def test_an_item_is_the_sampled_stored_frames(packed, mode):
    ix = load_index(str(packed))
    stored = _stored_frames(packed)
    ds = ShardDataset(ix, num_frames=4, mode=mode, seed=3)
    ds.set_epoch(2)
    for i in range(len(ds)):
        item = ds[i]
        cid, n = int(ix.table.caption_id[i]), int(ix.count[i])
        dur = ix.table.end_s[i] - ix.table.start_s[i]
        rng = np.random.default_rng([3, 2, i])  # ClipDataset's per-item draw: (seed, epoch, index)
        idx = sample_indices(0.0, dur, n / dur, 4, mode, rng, num_frames_in_video=n)
        assert n == len(stored[cid]) and item["caption_id"] == cid and item["video"].shape == (4, 32, 32, 3)
        assert np.array_equal(item["video"].numpy(), np.stack([stored[cid][k] for k in idx])), (mode, i)
    if mode != "uniform":  # another epoch draws other frames for some item; the same epoch the same ones
        again = [ds[i]["video"] for i in range(len(ds))]
        ds.set_epoch(3)
        other = [ds[i]["video"] for i in range(len(ds))]
        assert any(not np.array_equal(a, b) for a, b in zip(again, other))
        ds.set_epoch(2)
        assert all(np.array_equal(a, ds[i]["video"]) for i, a in enumerate(again))


def test_damaged_shards_are_skipped_and_counted_by_reason(packed, tmp_path, caplog):
    bad = tmp_path / "bad"
    shutil.copytree(packed, bad)
    ix = load_index(str(bad))
    data = (bad / "shard-000001.tar").read_bytes()
    cut = len(data) // 2
    (bad / "shard-000001.tar").write_bytes(data[:cut])  # truncated after the index was read
    (bad / "shard-000002.tar").unlink()  # missing
    k0 = int(np.flatnonzero(ix.shard == 0)[0])
    data0 = bytearray((bad / "shard-000000.tar").read_bytes())
    for off in ix.offsets[ix.first[k0]: ix.first[k0] + ix.count[k0]]:  # shard 0's first row: corrupt JPEGs
        data0[off:off + 200] = bytes(200)
    (bad / "shard-000000.tar").write_bytes(bytes(data0))
    ds = ShardDataset(ix, num_frames=4, mode="uniform")
    items = [ds[i] for i in range(len(ds))]
    reasons = {}
    for i, it in enumerate(items):
        row_end = ix.offsets[ix.first[i] + ix.count[i] - 1] + ix.sizes[ix.first[i] + ix.count[i] - 1]
        want = ("missing_file" if ix.shard[i] == 2 else
                "undecodable_media" if (ix.shard[i] == 1 and row_end > cut) or i == k0 else None)
        if want is None:
            assert not it.get("skipped"), i
        else:
            assert it.get("skipped") and it["reason"] == want and it["caption_id"] == ix.table.caption_id[i], (i, it)
            reasons[want] = reasons.get(want, 0) + 1
    assert reasons["missing_file"] == int((ix.shard == 2).sum()) and reasons["undecodable_media"] >= 2
    assert ds.skipped.take() == sum(reasons.values())
    logged = [r.getMessage() for r in caplog.records if "shard data skipped" in r.getMessage()]
    assert any("shard-000001.tar" in m and "truncated shard" in m for m in logged)
    assert any("shard-000002.tar is missing" in m for m in logged)


def test_training_takes_its_split_and_levels_and_refuses_what_was_not_packed(packed):
    ix = load_index(str(packed))
    rows = training_rows(ix, [1, 3], ["case0", "case2"])
    t = ix.table
    want = sorted(int(c) for c, lv, v in zip(t.caption_id, t.level, t.video_name) if lv in (1, 3) and v in ("case0", "case2"))
    assert sorted(rows.table.caption_id.tolist()) == want and len(want) > 3
    ds = ShardDataset(rows, num_frames=2)
    assert {ds[i]["caption_id"] for i in range(len(ds))} == set(want)
    with pytest.raises(ShardError, match="training reads clean=False; .*manifest.json was packed with clean=True"):
        training_rows(ix, [1], ["case0"], clean=False)
    with pytest.raises(ShardError, match="training keeps clips of 0.0-900.0 s"):
        training_rows(ix, [1], ["case0"], max_duration=900.0)


# -- object storage ---------------------------------------------------------------------------------
SECRET = "never-printed-3f9a"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 (port chosen by the OS) and the AWS environment pointing at it."""
    require(importlib.util.find_spec("moto") is not None and importlib.util.find_spec("s3fs") is not None,
            "moto[server] and s3fs are needed for the object-storage tests (pip install 'surgclip[test]')")
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the server's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket="surg")
    yield "s3://surg"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_pack_to_and_train_from_s3(s3, corpus, packed, capsys, caplog):
    url = f"{s3}/run1/shards"
    m = pack(corpus / "captions.sqlite", url, video_root=corpus / "videos", settings=SETTINGS, workers=1,
             progress=False)
    local = json.loads((packed / "manifest.json").read_text())
    assert m["content_hash"] == local["content_hash"] and m["shards_sha256"] == local["shards_sha256"]
    remote, here = ShardDataset(load_index(url), num_frames=4, mode="random"), ShardDataset(load_index(str(packed)),
                                                                                           num_frames=4, mode="random")
    for i in range(len(here)):
        assert np.array_equal(remote[i]["video"], here[i]["video"]) and remote[i]["caption"] == here[i]["caption"]
    # a rerun finds the pack complete; another pack into the same prefix is refused with both hashes
    assert pack(corpus / "captions.sqlite", url, video_root=corpus / "videos", settings=SETTINGS, workers=1,
                progress=False)["shards_sha256"] == local["shards_sha256"]
    with pytest.raises(ShardError, match=f"holds another pack: its manifest.json has content hash {m['content_hash']}"):
        pack(corpus / "captions.sqlite", url, video_root=corpus / "videos", levels=[2], settings=SETTINGS, workers=1,
             progress=False)
    with pytest.raises(ShardError, match=r"s3://nobucket/x/manifest.json not found \(.*bucket does not exist"):
        load_index("s3://nobucket/x")
    # the DataModule trains from the bucket; a missing bucket stops it at setup, before any training
    import torch

    from surgclip.data.datamodule import SurgLaViDataModule

    for shards in (url, "s3://nobucket/x"):
        dm = SurgLaViDataModule(root=str(corpus), read_from="shards", shards=shards, num_frames=2, batch_size=4)
        dm.set_model(lambda texts: torch.zeros(len(texts), 4, dtype=torch.long), {"image_size": 32})
        if shards == url:
            dm.setup("fit")
            batch = next(iter(dm.train_dataloader()))
            assert isinstance(dm.datasets["train"], ShardDataset) and batch["valid"].all()
            assert set(dm.datasets["train"].table.video_name) == set(dm.datasets["train"].table.video_name) - set(
                dm.datasets["val"].table.video_name) and len(dm.datasets["val"])
        else:
            with pytest.raises(ShardError, match="s3://nobucket/x/manifest.json not found"):
                dm.setup("fit")
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err + caplog.text


def test_refused_credentials_are_a_clear_error(s3, monkeypatch):
    from moto import settings

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server now checks keys: ours is unknown
    with pytest.raises(ShardError) as err:
        load_index(f"{s3}/run1/shards")
    msg = str(err.value)
    assert msg.startswith("s3://surg/run1/shards/manifest.json: reading failed (PermissionError") and SECRET not in msg
