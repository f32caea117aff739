"""The package's architecture stays as designed: the import contracts of pyproject.toml (layers,
no import circles) hold, and no module uses another module's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout


def _private_uses(path: Path, root: Path = ROOT) -> list[str]:
    """``from mrharmony.x import _name`` and ``module._name`` on an imported mrharmony module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found, aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mrharmony"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"{path.relative_to(root)}:{node.lineno}: from {node.module} import {a.name}")
                aliases.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mrharmony"):
                    aliases.add((a.asname or a.name).split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    files = sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))
    found = [f for path in files for f in _private_uses(path)]
    assert not found, "\n".join(found)


def test_the_private_name_check_finds_one(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text("from mrharmony.io import _json_default, atomic_path\nimport mrharmony.io as io\nx = io._UMASK\n")
    assert len(_private_uses(bad, tmp_path)) == 2


def _string_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Calls of ``importlib.import_module`` / ``__import__``: a module loaded by a name in a string,
    an arrow no check can see."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {name}(...)")
    return found


def test_no_module_is_loaded_by_a_name_in_a_string(tmp_path):
    """The wings' registries and the command table import what they name (statically, lazily where
    it must be), so every arrow is one import-linter sees."""
    found = [f for path in sorted((ROOT / "src").rglob("*.py")) for f in _string_imports(path)]
    assert not found, "\n".join(found)
    probe = tmp_path / "probe.py"
    probe.write_text("import importlib\nm = importlib.import_module('mrharmony.io')\nn = __import__('os')\n")
    assert len(_string_imports(probe, tmp_path)) == 2


def test_each_wing_has_its_own_registry_and_the_engine_names_no_method():
    from mrharmony.dmri.registry import REGISTRY as DMRI
    from mrharmony.structural.registry import REGISTRY as STRUCTURAL

    assert DMRI.wing == "dmri" and "msp" in DMRI.names("network") and "rish" in DMRI.names("statistical")
    assert STRUCTURAL.wing == "structural" and {"hail", "ihf"} <= set(STRUCTURAL.names("image"))
    engine = (ROOT / "src" / "mrharmony" / "engine" / "registry.py").read_text()
    for name in DMRI.names() + STRUCTURAL.names():
        if name != "none":
            assert f'"{name}"' not in engine, name
