"""Builders for tiny test models and data (imported by tests, not collected)."""
from __future__ import annotations

import functools

import lightning as L
import numpy as np

import surgclip

SMALL_OVERRIDES = {
    "SurgCLIP-B": dict(
        vision=dict(width=64, depth=2, heads=2, image_size=32, patch_size=16, num_frames=4),
        text=dict(config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)),
        embed_dim=16, preprocess=dict(image_size=32)),
    "tiny": dict(vision=dict(timm=dict(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2),
                             temporal_cfg=dict(heads=2)),
                 text=dict(config=dict(hidden_size=32, num_hidden_layers=1)),
                 embed_dim=16, preprocess=dict(image_size=32)),
    "CLIP-B-16": dict(open_clip=dict(pretrained=None)),
}
for _camma in ("SurgVLP", "HecVL", "PeskaVLP"):  # ResNet-18 trunk, small BERT, the shipped vocabulary
    SMALL_OVERRIDES[_camma] = dict(
        vision=dict(timm=dict(model="resnet18")), embed_dim=32, tokenizer=dict(vocab="bert-base-uncased"),
        text=dict(config=dict(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                              intermediate_size=64)), preprocess=dict(image_size=32))


def small_model(name: str, **extra):
    """A randomly initialised, shrunk version of a registered architecture (CPU, eval mode)."""
    overrides = surgclip.factory.deep_update(SMALL_OVERRIDES.get(name, {}), extra)
    return surgclip.create_model(name, **overrides).eval()


def write_frames(folder, numbers, size=(24, 32), seed=0, ext=".jpg"):
    """Write numbered RGB frames ``{n}{ext}`` with distinct content; returns the arrays by number."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for n in numbers:
        arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{n}{ext}", quality=95)
        arrays[n] = arr
    return arrays


def write_video(path, seconds: int, fps: int = 5, size: int = 64, seed: int = 0, noise: bool = False) -> None:
    """A small H.264 test video (PyAV): one random colour per second, or random noise in every frame."""
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(seconds):
            colour = rng.integers(0, 255, 3, dtype=np.uint8)
            for _ in range(fps):
                img = (rng.integers(0, 255, (size, size, 3), dtype=np.uint8) if noise
                       else np.broadcast_to(colour, (size, size, 3)).copy())
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def record_reads(module, monkeypatch) -> list[list[int]]:
    """Patch ``module.open_source`` so that every reader it opens logs the indices of each read
    (in call order) into the returned list."""
    reads, source = [], module.open_source

    def spied(*args, **kwargs):
        reader = source(*args, **kwargs)
        read = reader.read
        reader.read = lambda idx: reads.append([int(i) for i in idx]) or read(idx)
        return reader

    monkeypatch.setattr(module, "open_source", spied)
    return reads


class SyntheticClips:
    """A map-style dataset of random clips whose captions name their class (learnable, tiny)."""

    WORDS = ["grasper", "hook", "clipper", "scissors", "bipolar", "irrigator", "bag", "trocar"]

    def __init__(self, n=32, frames=2, size=32, classes=4, seed=0, nan_at=None):
        self.n, self.frames, self.size, self.classes, self.seed, self.nan_at = n, frames, size, classes, seed, nan_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        import torch

        c = i % self.classes
        g = torch.Generator().manual_seed(self.seed * 10_000 + i)
        video = torch.randn(self.frames, 3, self.size, self.size, generator=g) * 0.1 + (c - self.classes / 2) * 0.5
        if self.nan_at == i:
            video[:] = float("nan")
        return {"video": video, "caption": f"the {self.WORDS[c]} moves", "level": 1 + c % 3, "video_id": f"v{i // 4}",
                "caption_id": i, "start_s": float(i % 4) * 2, "end_s": float(i % 4) * 2 + 2}


def _collate(tokenizer, items):
    import torch

    return {"video": torch.stack([x["video"] for x in items]), "tokens": tokenizer([x["caption"] for x in items]),
            "level": torch.tensor([x["level"] for x in items]), "caption": [x["caption"] for x in items],
            "video_id": [x["video_id"] for x in items], "caption_id": torch.tensor([x["caption_id"] for x in items]),
            "start_s": torch.tensor([x["start_s"] for x in items]), "end_s": torch.tensor([x["end_s"] for x in items])}


class SyntheticDM(L.LightningDataModule):
    """A LightningDataModule over SyntheticClips with the real batch layout."""

    def __init__(self, tokenizer, batch_size=8, **kwargs):
        super().__init__()
        self.train, self.val = SyntheticClips(**kwargs), SyntheticClips(n=16, seed=99)
        self.batch_size, self.collate = batch_size, functools.partial(_collate, tokenizer)

    def train_dataloader(self):
        import torch
        from torch.utils.data import DataLoader, DistributedSampler

        # order from (seed, epoch) alone (Lightning calls set_epoch), so a resumed run repeats it
        sampler = DistributedSampler(self.train, num_replicas=1, rank=0, shuffle=True, seed=1000)
        return DataLoader(self.train, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collate,
                          drop_last=True, generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        from torch.utils.data import DataLoader

        return DataLoader(self.val, batch_size=self.batch_size, collate_fn=self.collate)


def synthetic_datamodule(tokenizer, batch_size=8, **kwargs):
    return SyntheticDM(tokenizer, batch_size, **kwargs)


TINY_TRAIN = dict(vision=dict(timm=dict(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2),
                              temporal_cfg=dict(heads=2, num_frames=2)),
                  text=dict(config=dict(hidden_size=32, num_hidden_layers=1, hidden_dropout_prob=0.1)),
                  embed_dim=16, preprocess=dict(image_size=32))
