"""Shared fixtures: offline mode, seeds, the path to ../shared/realdata (skip when absent), the tiny
model, the small sample, and a tiny Cholec80-layout dataset."""
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
    from surgclip.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample") / "s", seed=0, num_videos=5, workers=1)


# A tiny Cholec80-layout dataset (real layout, small H.264 videos at 5 fps while the labels count
# 25-fps frames), for the dataset and evaluation tests.
PHASES = ["Preparation", "CalotTriangleDissection", "ClippingCutting", "GallbladderDissection",
          "GallbladderPackaging", "CleaningCoagulation", "GallbladderRetraction"]
TOOLS = ["Grasper", "Bipolar", "Hook", "Scissors", "Clipper", "Irrigator", "SpecimenBag"]


def phase_sequence(seconds: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, seconds), 3, replace=False))
    return [int(np.searchsorted(cuts, s, side="right")) + (seed % 3) for s in range(seconds)]


@pytest.fixture(scope="session")
def cholec_root(tmp_path_factory) -> Path:
    """videos 49 and 50 (8 s each, 5 fps), 25-fps phase files, tool files every 25 frames."""
    from helpers import write_video

    root = tmp_path_factory.mktemp("cholec80")
    (root / "phase_annotations").mkdir()
    (root / "tool_annotations").mkdir()
    for k, vid in enumerate((49, 50)):
        seconds = 8
        write_video(root / "videos" / f"video{vid}.mp4", seconds, seed=vid)
        phases = phase_sequence(seconds, k)
        lines = ["Frame\tPhase"] + [f"{f}\t{PHASES[phases[f // 25]]}" for f in range(seconds * 25)]
        (root / "phase_annotations" / f"video{vid}-phase.txt").write_text("\n".join(lines) + "\n")
        rng = np.random.default_rng(vid)
        tool_lines = ["Frame\t" + "\t".join(TOOLS)]
        for f in range(0, seconds * 25, 25):
            tool_lines.append(f"{f}\t" + "\t".join(str(int(x)) for x in rng.integers(0, 2, len(TOOLS))))
        (root / "tool_annotations" / f"video{vid}-tool.txt").write_text("\n".join(tool_lines) + "\n")
    return root
