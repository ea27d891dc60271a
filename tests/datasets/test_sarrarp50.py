"""SAR-RARP50: the action reader on a small file, and a bad class id named by file:line."""
import pytest

from surgclip.datasets.sarrarp50 import read_sarrarp50
from surgclip.datasets.table import LabelFileError


def test_action_reader_fixture(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "action_discrete.txt").write_text("0,0\n6,3\n12,7\n")
    t = read_sarrarp50(tmp_path / "v1" / "action_discrete.txt", [str(i) for i in range(8)], label_fps=60)
    assert t.labels.tolist() == [0, 3, 7] and t.time_s[1] == pytest.approx(0.1) and t.video[0] == "v1"
    (tmp_path / "v1" / "action_discrete.txt").write_text("0,0\n6,8\n")
    with pytest.raises(LabelFileError, match="action_discrete.txt:2: unknown class id 8"):
        read_sarrarp50(tmp_path / "v1" / "action_discrete.txt", [str(i) for i in range(8)])
