"""surgclip.utils: atomic writes follow the umask; the folder lock refuses a second holder."""
import os

import pytest

from surgclip.utils import LockedError, atomic_write_json, folder_lock


def test_umask_is_followed(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {})
        os.umask(0o002)
        atomic_write_json(tmp_path / "b.json", {})
        os.umask(0o077)
        atomic_write_json(tmp_path / "c.json", {})
    finally:
        os.umask(old)
    modes = [(tmp_path / n).stat().st_mode & 0o777 for n in ("a.json", "b.json", "c.json")]
    assert modes == [0o644, 0o664, 0o600]
    assert not list(tmp_path.glob(".*.tmp"))


def test_folder_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with folder_lock(tmp_path / "f", "job A"):
        assert (tmp_path / "f" / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(LockedError, match=rf"locked by another process \(pid {os.getpid()}, .*job B refuses"):
            with folder_lock(tmp_path / "f", "job B"):
                pass
    with folder_lock(tmp_path / "f", "job B"):
        pass
