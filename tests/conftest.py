"""Shared fixtures: offline mode, seeds, the path to ../shared/realdata (skip when absent)."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(2)

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("SURGCLIP_SHARED", REPO.parent / "shared"))
REALDATA = SHARED / "realdata"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing, but fail under CI (``CI=true``), which installs it itself."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI prerequisite missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata (CC BY-NC-SA; read in place, never copied). Skips when absent (fails under CI)."""
    require(REALDATA.is_dir(), f"real surgical data not available at {REALDATA}")
    return REALDATA


@pytest.fixture(scope="session")
def tiny_model():
    """The tiny model with seeded random weights, in eval mode (shared, do not modify)."""
    import surgclip

    model, preprocess, tokenizer = surgclip.load("tiny", device="cpu")
    return model, preprocess, tokenizer


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory) -> Path:
    """A 5-video sample dataset (3 train, 1 val, 1 test; seed 0), generated once per session."""
    from surgclip.data.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample") / "s", seed=0, num_videos=5, workers=1)
