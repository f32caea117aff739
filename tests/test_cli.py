import subprocess
import sys

from mrharmony.cli import main


def test_help_imports_no_heavy_module():
    """`mrharmony --help` stays instant: the command line imports numpy, torch, dipy lazily."""
    code = ("import sys; from mrharmony.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('numpy', 'torch', 'dipy', 'nibabel', 'scipy', 'nilearn') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_and_version(capsys):
    for argv in (["--help"], ["--version"]):
        try:
            main(argv)
        except SystemExit as exc:
            assert exc.code == 0
    out = capsys.readouterr().out
    assert "simulate" in out and "prepare" in out and "mrharmony 0." in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_console_script_runs(tmp_path):
    from pathlib import Path

    exe = Path(sys.executable).parent / "mrharmony"  # installed beside the interpreter
    assert exe.exists(), "the mrharmony console script is installed"
    out = subprocess.run([str(exe), "simulate", str(tmp_path / "x"), "--preset", "nope"], capture_output=True, text=True)
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
    assert "| msp |" in text and "| none |" in text and "report:" in text
    assert (out / "data" / "derivatives" / "mrharmony-sh" / "dataset_description.json").exists()
    for name in ("diqt-prisma_st", "shresnet-connectom_sa", "cpm", "hned", "msp"):
        assert (out / "runs" / name / "model.pt").exists(), name
    for name in ("none", "meanvar_global", "meanvar_voxel", "rish"):
        assert (out / "runs" / name / "harmonizer.json").exists(), name
    assert "| rish |" in text and "| meanvar_voxel |" in text
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "Wilcoxon" in page and "sub-03" in page
    assert (out / "evaluation" / "table.md").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind
