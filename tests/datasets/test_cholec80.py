"""Cholec80: the phase and tool readers on small files in the release format, bad input named by
file:line, and the loader on a release-layout root."""
import numpy as np
import pytest

from conftest import PHASES, TOOLS
from surgclip import datasets as D
from surgclip.datasets.cholec80 import read_cholec80_phase, read_cholec80_tool
from surgclip.datasets.table import LabelFileError


def test_cholec80_phase_and_tool(cholec_root):
    table = D.load_benchmark("cholec80", cholec_root, split="test")  # videos 49, 50 are test videos
    assert table.videos() == ["video49", "video50"]
    assert len(table) == 16  # 8 s each, subsampled from 25-fps labels to 1 fps
    assert np.allclose(table.time_s[:8], np.arange(8)) and table.frame[1] == 25
    tools = D.load_benchmark("cholec80", cholec_root, split="all", task="tool")
    assert tools.multilabel and tools.targets.shape == (16, 7) and tools.classes == TOOLS
    assert set(table.sources) == {"video49", "video50"}


def test_cholec80_label_fps_override(cholec_root):
    table = D.load_benchmark("cholec80", cholec_root, split="all", label_fps=50, eval_fps=1)
    assert table.time_s.max() == pytest.approx(3.0)  # 200 frames at 50 fps


@pytest.mark.parametrize("content,needle", [
    ("Frame\tPhase\n0\tPreparation\n1\tNotAPhase\n", ":3: unknown phase 'NotAPhase'"),
    ("Frame\tPhase\n0\tPreparation\nx\tPreparation\n", ":3: expected an integer frame index"),
    ("Frame\tPhase\n0\tPreparation\textra\n", ":2: expected 2 tab-separated fields"),
])
def test_bad_phase_file_names_file_and_line(tmp_path, content, needle):
    path = tmp_path / "video01-phase.txt"
    path.write_text(content)
    with pytest.raises(LabelFileError, match=needle.replace("(", r"\(")) as err:
        read_cholec80_phase(path, PHASES)
    assert str(path) in str(err.value)


def test_tool_header_must_match(tmp_path):
    path = tmp_path / "video01-tool.txt"
    path.write_text("Frame\tGrasper\tHook\n0\t1\t0\n")
    with pytest.raises(LabelFileError, match=":1: tool columns"):
        read_cholec80_tool(path, TOOLS)
