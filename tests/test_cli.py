import re
import subprocess
import sys

from mrharmony.cli import main


def test_help_imports_no_heavy_module():
    """`mrharmony --help` stays instant: the command line imports numpy, torch, dipy lazily."""
    code = (
        "import sys; from mrharmony.cli import build_parser; build_parser(); "
        "heavy = [m for m in ('numpy', 'torch', 'dipy', 'nibabel', 'scipy', 'nilearn') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_and_version(capsys):
    for argv in (["--help"], ["--version"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0
    out = capsys.readouterr().out
    assert "simulate" in out and "dmri" in out and "structural" in out and "mrharmony 0." in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_console_script_runs(tmp_path):
    from pathlib import Path

    exe = Path(sys.executable).parent / "mrharmony"  # installed beside the interpreter
    assert exe.exists(), "the mrharmony console script is installed"
    out = subprocess.run(
        [str(exe), "simulate", str(tmp_path / "x"), "--preset", "nope"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    assert main(["simulate", str(blocker / "out"), "--preset", "tiny", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "out: cannot be created" in err and err.count("\n") == 1


def test_existing_output_without_force(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("1")
    assert main(["demo", str(tmp_path / "o"), "--preset", "tiny", "--quiet"]) == 2
    assert "pass --force" in capsys.readouterr().err


def test_demo_on_the_tiny_preset(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--preset", "tiny", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "| msp |" in text and "| none |" in text and "report:" in text and "| nyul |" in text
    assert (out / "data" / "derivatives" / "mrharmony-sh" / "dataset_description.json").exists()
    for name in ("diqt-prisma_st", "diqt-connectom_sa", "msp", "hail", "ihf"):
        assert (out / "runs" / name / "model.pt").exists(), name
    for name in ("none", "meanvar_global", "rish"):
        assert (out / "runs" / name / "harmonizer.json").exists(), name
    assert "| rish |" in text and "| meanvar_global |" in text
    page = (out / "report.html").read_text()
    # dMRI: summary bars, the held-out subject's maps, Bland-Altman plots, training curves, Fig. 3;
    # structural: one picture per modality
    assert page.count("data:image/png;base64,") == 5 + 3 and "Wilcoxon" in page and "sub-03" in page
    assert "rescan floor" in page and "Structural:" in page and page.count("<details>") == 5
    assert not re.search(r"""(src|href)=["']?https?:""", page)  # self-contained
    assert (out / "evaluation" / "table.md").exists() and (out / "structural-evaluation" / "rows.csv").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
    # the structural results name the data relative to themselves: the moved folder still reports
    moved = tmp_path / "moved"
    out.rename(moved)
    assert (
        main(
            [
                "report",
                "--structural",
                str(moved / "structural-evaluation"),
                "--out",
                str(tmp_path / "r.html"),
                "--quiet",
            ]
        )
        == 0
    )


def test_demo_of_one_wing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", str(out), "--preset", "tiny", "--only", "structural", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "configs",
        "report.html",
        "runs",
        "structural",
        "structural-evaluation",
    ]
    assert "dMRI" not in (out / "report.html").read_text().split("<h2>Provenance")[0]


def test_each_command_imports_only_its_module():
    """The table is lazy: `mrharmony structural --help` imports the structural command module only."""
    code = (
        "import sys\nfrom mrharmony.cli import main\ntry:\n    main(['structural', '--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('mrharmony.cli.') or "
        "m.split('.')[0] in ('numpy', 'torch', 'dipy', 'nibabel', 'scipy'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().split("\n")[-1] == "mrharmony.cli.common,mrharmony.cli.structural"


def test_the_command_table():
    """Every command of the table is defined by its module, listed in order, and has --quiet."""
    import re

    from mrharmony.cli import COMMANDS, build_parser

    for name, (module, help_text) in COMMANDS.items():
        assert callable(getattr(module(), f"add_{name}")), name
        assert help_text.strip()
    parser = build_parser()
    listed = re.findall(r"^    (\w+)(?:  |$)", parser.format_help(), flags=re.M)
    assert listed == list(COMMANDS)
    assert parser.parse_args(["validate", "x", "--quiet"]).quiet
    args = parser.parse_args(["structural", "metrics", "--input", "i", "--prediction", "p", "--target", "t"])
    assert callable(args.func) and args.verb == "metrics"


def _help(argv, capsys) -> str:
    import pytest

    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_one_grammar_for_both_wings(capsys):
    """`mrharmony dmri VERB` and `mrharmony structural VERB`: the verbs both wings have, with --quiet,
    --out a folder for apply and evaluate, and --force; the verbs of one wing only in that wing."""
    import re

    listed = {
        wing: re.findall(r"^    (\w+)(?:  |$)", _help([wing], capsys), flags=re.M) for wing in ("dmri", "structural")
    }
    for wing, verbs in listed.items():
        assert {"train", "apply", "evaluate", "methods"} <= set(verbs), wing
        for verb in ("train", "apply", "evaluate", "methods"):
            text = _help([wing, verb], capsys)
            assert "--quiet" in text, (wing, verb)
            if verb in ("apply", "evaluate"):
                assert re.search(r"--out OUT\s+(output )?folder", text) and "--force" in text, (wing, verb)
    assert "restore" in listed["structural"] and "restore" not in listed["dmri"]
    assert "prepare" in listed["dmri"] and "prepare" not in listed["structural"]


def test_no_private_names_cross_cli_modules():
    import ast
    from pathlib import Path

    import mrharmony.cli

    for path in Path(mrharmony.cli.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mrharmony"):
                assert not [a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")], (
                    path.name
                )


def test_flow_is_gone_structural_has_one_group(capsys):
    try:
        main(["flow", "train", "x.yaml", "--out", "r"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "invalid choice: 'flow'" in capsys.readouterr().err
    try:
        main(["structural", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "apply" in out and "metrics" in out and "HAIL or IHF-Harmony" in out


def test_structural_train_and_apply_leave_the_method_to_the_files(tmp_path, monkeypatch, capsys):
    """`structural train` trains the config's method, `structural apply` applies the model's: the
    command line passes no method of its own."""
    import mrharmony.structural.apply
    import mrharmony.structural.training

    calls = {}

    def fake_train(config, out, **kw):
        calls["train"] = (config, out, kw)
        return tmp_path

    def fake_apply(model, **kw):
        calls["apply"] = (model, kw)
        return kw["out"]

    monkeypatch.setattr(mrharmony.structural.training, "train_structural", fake_train)
    monkeypatch.setattr(mrharmony.structural.apply, "apply_image_model", fake_apply)
    assert main(["structural", "train", "ihf.yaml", "--out", "run", "--stop-after-epochs", "2"]) == 0
    assert calls["train"] == (
        "ihf.yaml",
        "run",
        {"resume": False, "force": False, "quiet": False, "stop_after_epochs": 2},
    )
    assert "stopped (resume with --resume)" in capsys.readouterr().out
    assert (
        main(
            ["structural", "apply", "run", "--input", "i.nii.gz", "--target-image", "t.nii.gz", "--out", "o", "--quiet"]
        )
        == 0
    )
    assert calls["apply"] == (
        "run",
        {
            "input_path": "i.nii.gz",
            "target_path": "t.nii.gz",
            "out": "o",
            "mask_path": None,
            "target_mask_path": None,
            "force": False,
            "allow_modality_mismatch": False,
        },
    )
    assert capsys.readouterr().out == ""


def test_the_overwrite_policy(tmp_path, capsys):
    """An output that exists needs --force: checked once, before any work (structural metrics --json)."""
    import pytest

    from mrharmony.cli.common import check_new_output
    from mrharmony.errors import InputError

    out = tmp_path / "m.json"
    assert check_new_output(out, force=False) == out
    out.write_text("{}")
    with pytest.raises(InputError, match="m.json: already exists; pass --force to overwrite it."):
        check_new_output(out, force=False)
    assert check_new_output(out, force=True) == out
    args = [
        "structural",
        "metrics",
        "--input",
        str(tmp_path / "missing.nii.gz"),
        "--prediction",
        "p",
        "--target",
        "t",
        "--json",
        str(out),
    ]
    assert main(args) == 2  # the existing --json is refused before the images are read
    err = capsys.readouterr().err
    assert err == f"mrharmony structural metrics: error: {out}: already exists; pass --force to overwrite it.\n"
    assert out.read_text() == "{}"


def test_methods_lists_each_wings_registry(capsys):
    from mrharmony.dmri.registry import REGISTRY as DMRI
    from mrharmony.structural.registry import REGISTRY as STRUCTURAL

    for wing, registry in (("dmri", DMRI), ("structural", STRUCTURAL)):
        assert main([wing, "methods"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert [line.split()[:2] for line in lines] == [[m.name, m.kind] for m in registry.methods()]


def test_each_training_command_names_the_other_for_the_other_wing(tmp_path, capsys):
    (tmp_path / "hail.yaml").write_text("data: {dataset: d}\nmodel: {method: hail}\n")
    (tmp_path / "diqt.yaml").write_text("data: {dataset: d}\nmodel: {method: diqt}\n")
    assert main(["dmri", "train", str(tmp_path / "hail.yaml"), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert (
        "'hail' is not a dMRI method" in err and "a structural method trains with 'mrharmony structural train'" in err
    )
    assert main(["structural", "train", str(tmp_path / "diqt.yaml"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert (
        "needs a 'model' section whose 'method' is one of hail, ihf (structural methods; a dMRI method trains "
        "with 'mrharmony dmri train')." in err
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
