"""Training from packed shards (``data.read_from: shards``) through Lightning: two gloo processes see
every training caption exactly once per epoch between them, in an order fixed by (seed, epoch); a
run resumed from a mid-epoch checkpoint trains on exactly the batches the uninterrupted run trained
on after it; level weights and level_every schedules apply; validation still reads the videos."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from surgclip.data.pack import PackSettings, pack
from surgclip.data.shards import ShardDataset

from .shard_probe import Probe, make_datamodule, trainer
from .test_pack import make_corpus

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """5 videos, 30 captions; case4 (6 captions) is the validation split: 24 training captions."""
    root = make_corpus(tmp_path_factory.mktemp("corpus"), n_videos=5, n_rows=30, seed=2)
    (root / "splits.json").write_text(json.dumps({"train": ["case0", "case1", "case2", "case3"], "val": ["case4"]}))
    return root


@pytest.fixture(scope="module")
def shards(corpus) -> Path:
    out = corpus / "shards"
    pack(corpus / "captions.sqlite", str(out), video_root=corpus / "videos", workers=1, progress=False,
         settings=PackSettings(fps=2, min_frames=2, max_frames=4, size=32, shard_captions=7))
    return out


def _train_ids(corpus) -> list[int]:
    from surgclip.data.db import CaptionDB

    t = CaptionDB(corpus / "captions.sqlite").select()
    return sorted(int(c) for c, v in zip(t.caption_id, t.video_name) if v != "case4")


def test_the_datamodule_trains_from_shards_and_validates_from_the_videos(corpus, shards):
    dm = make_datamodule(corpus, shards)
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert isinstance(train, ShardDataset) and not isinstance(val, ShardDataset)
    assert train.table.caption_id.tolist() == _train_ids(corpus)  # in the order the videos' dataset has them
    videos = make_datamodule(corpus, None, read_from="videos")
    videos.setup("fit")
    assert videos.datasets["train"].table.caption_id.tolist() == train.table.caption_id.tolist()
    assert videos.datasets["train"].table.caption == train.table.caption  # the same selection and cleaning
    assert val.video_root == corpus / "videos" and set(val.table.video_name) == {"case4"}
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (8, 2, 3, 32, 32) and batch["valid"].all()
    with pytest.raises(ValueError, match="data.read_from is 'shards': give data.shards"):
        make_datamodule(corpus, None)


class NoTokens:  # a tokenizer that travels to forkserver workers (a lambda does not)
    def __call__(self, texts):
        import torch

        return torch.zeros(len(texts), 4, dtype=torch.long)


@pytest.mark.slow
def test_loader_workers_read_the_shards_as_the_main_process_does(corpus, shards):
    """Workers started by the forkserver get the dataset pickled: the shard store reopens there."""
    batches = {}
    for workers in (0, 2):
        dm = make_datamodule(corpus, shards, num_workers=workers)
        dm.set_model(NoTokens(), {"image_size": 32})
        batches[workers] = [(b["caption_id"].tolist(), b["video"]) for b in dm.train_dataloader()]
    assert [ids for ids, _ in batches[0]] == [ids for ids, _ in batches[2]] and len(batches[0]) == 3
    assert all(v0.equal(v2) for (_, v0), (_, v2) in zip(batches[0], batches[2]))


@pytest.mark.slow
def test_two_gloo_processes_see_every_caption_once_per_epoch(corpus, shards, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(HERE / "shard_probe.py"), str(corpus), str(shards), str(tmp_path), "2"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2 * 3  # 24 captions / global batch 8, 2 epochs
    orders = []
    for epoch in (0, 1):
        seen = [cid for r in ranks for step in r if step["epoch"] == epoch for cid in step["caption_id"]]
        assert sorted(seen) == _train_ids(corpus)  # every training caption exactly once across the ranks
        assert all(all(step["valid"]) and len(step["caption_id"]) == 4 for r in ranks for step in r)
        orders.append([step["caption_id"] for r in ranks for step in r if step["epoch"] == epoch])
    assert orders[0] != orders[1]  # the order moves with the epoch ...
    dm = make_datamodule(corpus, shards)  # ... and is the (seed, epoch) order of one process, dealt to the ranks
    dm.setup("fit")
    from surgclip.data.datamodule import LevelSampler

    table = dm.datasets["train"].table
    for epoch in (0, 1):
        order = [int(table.caption_id[i]) for i in LevelSampler(table.level, [1, 2, 3], None, 5, epoch).order()]
        for k in range(3):
            step = [cid for r in ranks for cid in [s for s in r if s["epoch"] == epoch][k]["caption_id"]]
            assert sorted(step) == sorted(order[8 * k: 8 * k + 8])


def test_a_mid_epoch_checkpoint_resumes_at_the_next_unseen_batch(corpus, shards, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    overrides = dict(level_weights={1: 2.0, 2: 1.0, 3: 1.0}, level_every={3: 2})
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1, filename="{epoch}-{step}")
    full = Probe(str(tmp_path / "full"))
    trainer(max_epochs=3, callbacks=[ckpt], default_root_dir=tmp_path).fit(full, datamodule=make_datamodule(
        corpus, shards, **overrides))
    steps = full.steps
    # 24 training captions, 8 per level: 3 batches of 8, but 2 in epoch 1, which leaves phase captions out
    assert [s["epoch"] for s in steps] == [0, 0, 0, 1, 1, 2, 2, 2]
    # level_every {3: 2}: phase captions only in epochs 0 and 2; weights draw with replacement
    levels = {e: {lv for s in steps if s["epoch"] == e for lv in s["level"]} for e in range(3)}
    assert 3 in levels[0] and 3 not in levels[1] and 3 in levels[2]
    for name, done in (("epoch=1-step=4.ckpt", 4), ("epoch=0-step=2.ckpt", 2)):
        resumed = Probe(str(tmp_path / name))
        trainer(max_epochs=3, default_root_dir=tmp_path).fit(
            resumed, datamodule=make_datamodule(corpus, shards, **overrides), ckpt_path=tmp_path / "ckpt" / name)
        assert resumed.steps == steps[done:], name  # the rest of the interrupted epoch, then the same epochs
