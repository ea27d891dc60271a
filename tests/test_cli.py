"""The ``surgclip`` command: seven groups at the top, the former top-level names as aliases."""
import json

import pytest

from surgclip.cli import ALIASES, COMMANDS, build_parser, main


def test_top_level_lists_the_groups_and_the_aliases(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    commands = out.split("positional arguments:", 1)[1].split("options:")[0]
    listed = {line.split()[0] for line in commands.splitlines()
              if line.startswith("    ") and not line.startswith("      ") and line.split()[0] != "COMMAND"}
    assert listed == set(COMMANDS) == {"train", "data", "eval", "index", "search", "serve", "models"}
    assert all(f"{alias} = {' '.join(path)}" in out for alias, path in ALIASES.items())


def test_every_alias_parses_as_its_command_path():
    for alias, path in ALIASES.items():
        parser = build_parser(path[0])
        action = next(a for a in parser._subparsers._group_actions)  # the COMMAND choices
        sub = action.choices[path[0]]
        runs = next(a for a in sub._subparsers._group_actions)
        assert path[1] in runs.choices, alias


def test_alias_and_group_give_the_same_run(cholec_root, tmp_path):
    args = ["--benchmark", "cholec80", "--root", str(cholec_root), "--model", "tiny", "--split", "all",
            "--num-frames", "1", "--limit", "2"]
    assert main(["zeroshot", *args, "--out", str(tmp_path / "a")]) == 0
    assert main(["eval", "zeroshot", *args, "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / d / "zeroshot.json").read_text())["metrics"] for d in "ab")
    assert a["accuracy"] == b["accuracy"] and a["num_scored"] == b["num_scored"] == 4


def test_errors_name_the_command_as_typed(tmp_path, capsys):
    assert main(["zeroshot", "--benchmark", "cholec80", "--root", str(tmp_path / "none"), "--model", "tiny"]) == 1
    assert "surgclip zeroshot: error:" in capsys.readouterr().err
    assert main(["eval"]) == 1
    assert "surgclip eval: error: surgclip eval needs --suite" in capsys.readouterr().err
