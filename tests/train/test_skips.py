"""Skipped training items: counted by reason, replaced by stand-ins so every batch keeps its size
(the copy-of-a-valid-item path runs in test_ddp; the loss side in tests/test_loss.py)."""
import shutil
import sqlite3

import numpy as np
import torch

from surgclip.data.datamodule import SurgLaViDataModule
from surgclip.transform import normalize_frames


def test_skips_are_counted_by_reason_and_batches_keep_their_size(small_sample, tmp_path):
    splits = {"train": ["lc001", "lc004", "lc005"]}
    videos = tmp_path / "videos"
    for name in splits["train"]:
        (videos / name).mkdir(parents=True)
    shutil.copy(small_sample / "videos" / "lc001" / "lc001.mp4", videos / "lc001")
    data = (small_sample / "videos" / "lc004" / "lc004.mp4").read_bytes()
    (videos / "lc004" / "lc004.mp4").write_bytes(data[: len(data) // 2])  # truncated: undecodable
    # lc005 has no file: missing_file
    db = tmp_path / "captions.sqlite"
    shutil.copy(small_sample / "captions.sqlite", db)
    with sqlite3.connect(db) as con:
        bad = con.execute("SELECT caption_id FROM captions WHERE video_name = 'lc001' AND level_id = 3 "
                          "ORDER BY caption_id LIMIT 1").fetchone()[0]
        con.execute("UPDATE captions SET start_time = 9000, end_time = 9001 WHERE caption_id = ?", (bad,))

    dm = SurgLaViDataModule(root=None, paths={"db_path": str(db), "video_root": str(videos),
                                                     "splits_file": str(small_sample / "splits.json")}, model_name="tiny", num_frames=2,
                            levels=[3], batch_size=1, skip_errors=True)
    dm.set_model(lambda texts: torch.zeros(len(texts), 4, dtype=torch.long), {"image_size": 32})
    dm.setup("fit")
    table = dm.datasets["train"].table
    names = np.asarray(table.video_name)
    expected = {"missing_file": int((names == "lc005").sum()), "undecodable_media": int((names == "lc004").sum()),
                "bad_span": 1}
    assert all(expected.values())

    counts = dict.fromkeys(expected, 0)
    sizes, real = [], 0
    for batch in dm.train_dataloader():
        sizes.append(len(batch["video_id"]))
        for reason, n in batch["skipped"].items():
            counts[reason] += n
        assert int((~batch["valid"]).sum()) == batch["num_skipped"] == sum(batch["skipped"].values())
        ids = batch["caption_id"][batch["valid"]]
        assert bad not in ids.tolist() and set(np.asarray(batch["video_id"])[batch["valid"].numpy()]) <= {"lc001"}
        real += int(batch["valid"].sum())
        assert batch["video"].shape[0] == len(batch["video_id"])
        if not batch["valid"].any():  # nothing valid to copy: the blank stand-in
            black = normalize_frames(torch.zeros(batch["video"].shape, dtype=torch.uint8), dm.preprocess_cfg)
            assert batch["caption_id"].tolist() == [-1] and torch.allclose(batch["video"], black)
    assert counts == expected
    assert sizes == [1] * len(table)  # every item yields a batch, skipped or not
    assert real == len(table) - sum(expected.values())


def test_validation_skips_reach_the_val_metrics(small_sample, tmp_path):
    """A held-out video whose file is gone: its clips are counted as val/skipped_missing_file, and
    retrieval is scored on the others only."""
    import json

    import lightning as L

    from surgclip.train.module import SurgCLIPModule

    splits = json.loads((small_sample / "splits.json").read_text())
    present, gone = splits["val"][0], splits["train"][0]
    videos = tmp_path / "videos"
    for name in splits["train"][1:] + [present]:
        shutil.copytree(small_sample / "videos" / name, videos / name)
    (tmp_path / "splits.json").write_text(json.dumps({"train": splits["train"][1:], "val": [present, gone]}))
    small = {"num_frames": 2, "embed_dim": 16, "preprocess": {"image_size": 32},
             "vision": {"timm": {"img_size": 32, "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2},
                        "temporal_cfg": {"heads": 2, "num_frames": 2}},
             "text": {"config": {"hidden_size": 32, "num_hidden_layers": 1}}}
    module = SurgCLIPModule(model="tiny", model_overrides=small)
    dm = SurgLaViDataModule(root=None, paths={"db_path": str(small_sample / "captions.sqlite"),
                                                     "video_root": str(videos), "splits_file": str(tmp_path / "splits.json")},
                            num_frames=2, batch_size=8, skip_errors=True)
    L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).validate(module, datamodule=dm, verbose=False)
    names = np.asarray(dm.datasets["val"].table.video_name)
    metrics = module.last_val_metrics
    assert metrics["val/skipped_missing_file"] == metrics["val/skipped"] == float((names == gone).sum()) > 0
    assert metrics["val/num_clips"] == float((names == present).sum())
