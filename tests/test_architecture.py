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
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in aliases):
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
