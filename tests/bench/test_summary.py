"""Summaries written whole, in the layout of the committed results."""

import json

from mrharmony.bench.summary import command, dump_json, machine, write_summary


def test_json_keeps_its_key_order_and_indent(tmp_path):
    obj = {"b": 1, "a": {"d": [1, 2], "c": None}}
    dump_json(tmp_path / "deep" / "x.json", obj)
    assert (tmp_path / "deep" / "x.json").read_text() == json.dumps(obj, indent=1) + "\n"
    dump_json(tmp_path / "y.json", obj, indent=2)
    assert (tmp_path / "y.json").read_text() == json.dumps(obj, indent=2) + "\n"


def test_a_summary_is_written_as_json_and_markdown_and_printed(tmp_path, capsys):
    write_summary(tmp_path, "summary-partial", {"z": 1, "a": 2}, "# title\n")
    assert (tmp_path / "summary-partial.json").read_text() == '{\n "z": 1,\n "a": 2\n}\n'
    assert (tmp_path / "summary-partial.md").read_text() == "# title\n"
    assert capsys.readouterr().out == "# title\n\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary-partial.json", "summary-partial.md"]


def test_the_command_and_machine_of_a_summary(monkeypatch):
    monkeypatch.setattr("sys.argv", ["benchmarks/x.py", "--budget", "cpu"])
    assert command("benchmarks/x.py") == "python benchmarks/x.py --budget cpu"
    assert set(machine()) == {"node", "cpus", "processor"}
