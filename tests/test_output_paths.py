"""Where a command writes, given wrong: a folder where a file goes, a file where a folder goes,
or a path through a file. Each is refused as the command starts, in one line with exit 2 (as
argparse refuses any bad option), before any scoring or database work. ``calibrate --report
FILE``, ``history export --images FILE``, ``eval --json FOLDER`` and ``predict --out FILE/sub``
ended in a traceback instead, the report and the JSON only after the whole scoring."""

from __future__ import annotations

import pytest

from cli.main import main


@pytest.fixture
def places(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder\n")
    a_folder = tmp_path / "results"
    a_folder.mkdir()
    return tmp_path, a_file, a_folder


def refused_at_start(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert ": error: argument " in line
    return line


def test_a_folder_option_given_a_file_or_a_path_through_one(places, capsys) -> None:
    tmp_path, a_file, _ = places
    model, good = str(tmp_path / "m.safetensors"), str(tmp_path / "good")
    for option, argv in (
        ("--report", ["calibrate", model, good, "--report", str(a_file)]),
        ("--report", ["calibrate", model, good, "--report", str(a_file / "report")]),
        ("--images", ["history", "export", "--out", str(tmp_path / "x.csv"), "--images", str(a_file)]),
        ("--images", ["history", "export", "--out", str(tmp_path / "x.csv"), "--images", str(a_file / "img")]),
        ("--out", ["predict", model, str(a_file), "--out", str(a_file / "overlays")]),
    ):
        line = refused_at_start(argv, capsys)
        assert f"argument {option}: " in line
        assert "is a file" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "results"]


def test_a_file_option_given_a_folder_or_a_path_through_a_file(places, capsys) -> None:
    tmp_path, a_file, a_folder = places
    model = str(tmp_path / "m.safetensors")
    for argv, what in (
        (["eval", model, str(tmp_path), "--json", str(a_folder)], "is a folder"),
        (["eval", model, str(tmp_path), "--json", str(a_file / "metrics.json")], "is a file, not a folder"),
        (["bench", model, "--json", str(a_folder)], "is a folder"),
        (["history", "export", "--out", str(a_folder)], "is a folder"),
        (["history", "export", "--out", str(a_file / "x.csv")], "is a file, not a folder"),
        (["teach", "status", "--product", "tile", "--json", str(a_folder)], "is a folder"),
        (["teach", "shadow", "--product", "tile", "--version", "1", "--json", str(a_file / "s.json")], "is a file, not a folder"),
    ):
        line = refused_at_start(argv, capsys)
        assert "argument --json: " in line or "argument --out: " in line
        assert what in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "results"]
    assert not any(a_folder.iterdir())


def test_good_output_places_still_pass_the_parser(places) -> None:
    """A folder to be made (several levels deep) and a new file in one: the types let them be."""
    from cli.common import output_file, output_folder

    tmp_path, _, a_folder = places
    assert output_folder(str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"
    assert output_folder(str(a_folder)) == a_folder
    assert output_file(str(tmp_path / "new" / "m.json")) == tmp_path / "new" / "m.json"
    assert output_file("metrics.json").name == "metrics.json"
    assert not (tmp_path / "new").exists()
