"""Fixtures of the data tests: a small generated sample (session-wide) and broken files."""
from pathlib import Path

import pytest



@pytest.fixture(scope="session")
def cholec_clips(realdata) -> list[Path]:
    clips = sorted((realdata / "videos" / "cholec_clips").glob("*.mp4"))
    if not clips:
        pytest.skip(f"no Cholec clips in {realdata / 'videos' / 'cholec_clips'}")
    return clips
