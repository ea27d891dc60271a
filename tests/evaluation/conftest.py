"""Fixtures for evaluation tests: a tiny Cholec80-layout dataset (real layout, small H.264 videos
at 5 fps while the labels count 25-fps frames) and helpers."""
from pathlib import Path

import numpy as np
import pytest

from helpers import write_video  # noqa: F401 (re-exported for the evaluation tests)

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
