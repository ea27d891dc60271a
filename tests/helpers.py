"""Builders for tiny test models and data (imported by tests, not collected)."""
from __future__ import annotations

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
