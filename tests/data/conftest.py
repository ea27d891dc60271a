"""Fixtures of the data tests: a small generated sample (session-wide) and broken files."""
from pathlib import Path

import pytest

from surgclip.data.sample import make_sample


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory) -> Path:
    """A 5-video sample (3 train, 1 val, 1 test), seed 0."""
    return make_sample(tmp_path_factory.mktemp("sample") / "s", seed=0, num_videos=5, workers=1)


@pytest.fixture(scope="session")
def cholec_clips(realdata) -> list[Path]:
    clips = sorted((realdata / "videos" / "cholec_clips").glob("*.mp4"))
    if not clips:
        pytest.skip(f"no Cholec clips in {realdata / 'videos' / 'cholec_clips'}")
    return clips
