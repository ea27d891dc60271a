"""surgclip.utils: atomic writes follow the umask; the folder lock refuses a second holder; every
skip reason the package counts is one of ``SKIP_REASONS``."""
import ast
import os
from pathlib import Path

import pytest

from surgclip.utils import CLIP_SKIP_REASONS, SKIP_REASONS, LockedError, atomic_write_json, folder_lock

ROOT = Path(__file__).resolve().parent.parent


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


def reason_literals(package: Path) -> dict[str, set[str]]:
    """{string: files} of the string constants the source uses as skip reasons: keys of ``skipped[...]``
    and ``failed_by_reason[...]``, values given to a ``reason`` variable, what ``skip_reason`` /
    ``failure_reason`` return, the fallback after ``skip_reason(...) or``, a ``.get("reason", ...)`` default."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        keys = {id(c.args[0]) for c in ast.walk(tree) if isinstance(c, ast.Call) and c.args
                and ast.unparse(c.func).endswith(".get")}  # the key of a .get, not a value
        for node in ast.walk(tree):
            parts = []
            if isinstance(node, ast.Subscript) and any(w in ast.unparse(node.value) for w in ("skipped", "failed_by_reason")):
                parts.append(node.slice)
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "reason" for t in node.targets):
                parts.append(node.value)
            elif isinstance(node, ast.FunctionDef) and node.name in ("skip_reason", "failure_reason"):
                parts += [n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None]
            elif isinstance(node, ast.BoolOp) and "skip_reason(" in ast.unparse(node.values[0]):
                parts += node.values[1:]
            for part in parts:
                for c in ast.walk(part):
                    if isinstance(c, ast.Constant) and isinstance(c.value, str) and id(c) not in keys:
                        found.setdefault(c.value, set()).add(path.name)
    return found


def test_every_skip_reason_is_one_of_the_enumeration():
    found = reason_literals(ROOT / "surgclip")
    assert {"missing_file", "undecodable_media", "bad_span", "missing_frame"} <= set(found)  # the scan sees them
    unknown = {r: sorted(files) for r, files in found.items() if r not in SKIP_REASONS}
    assert not unknown, f"skip reasons outside utils.SKIP_REASONS: {unknown}"
    assert set(CLIP_SKIP_REASONS) <= set(SKIP_REASONS)


def test_the_reason_scan_sees_a_new_name(tmp_path):
    (tmp_path / "m.py").write_text('def f(skipped, err):\n    skipped["no_such_reason"] += 1\n'
                                   '    reason = "a" if err else "b"\n    return skip_reason(p, err) or "c"\n')
    assert set(reason_literals(tmp_path)) == {"no_such_reason", "a", "b", "c"}
