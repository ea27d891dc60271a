from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def train_sample(tmp_path_factory) -> Path:
    """A 5-video sample dataset (3 train, 1 val, 1 test), seed 0."""
    from surgclip.data.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("train_sample") / "s", seed=0, num_videos=5, workers=1)
