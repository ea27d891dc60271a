"""Checkpoints: written atomically, read back without unpickling code."""
import pickle

import pytest
import torch

from surgclip.train.callbacks import AtomicCheckpointIO


class Payload:
    """Unpickling this would run arbitrary code in a hostile file; weights_only refuses it."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def test_checkpoint_roundtrip_and_refuses_pickled_code(tmp_path):
    io = AtomicCheckpointIO()
    good = {"state_dict": {"w": torch.arange(3.0)}, "epoch": 2}
    io.save_checkpoint(good, tmp_path / "good.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["good.ckpt"]  # no temp file left beside it
    loaded = io.load_checkpoint(tmp_path / "good.ckpt")
    assert loaded["epoch"] == 2 and torch.equal(loaded["state_dict"]["w"], torch.arange(3.0))
    torch.save({"state_dict": {}, "evil": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        io.load_checkpoint(tmp_path / "evil.ckpt", weights_only=False)
