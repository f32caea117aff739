"""Writing a benchmark's results: JSON and Markdown, whole or not at all, through :mod:`mrharmony.io`.

Each writer keeps the layout a benchmark's committed results have (the JSON's indent and key
order as the benchmark built it), so that a summary made again from a record is the same file.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from mrharmony.io import write_text


def dump_json(path: Path, obj, *, indent: int = 1) -> None:
    """Write ``obj`` as JSON to ``path`` atomically, its keys in the order they have.

    Parameters
    ----------
    path : Path
        The file (its folder made if need be).
    obj
        Plain values (dicts, lists, numbers, strings).
    indent : int
        The JSON indent of the benchmark's results.
    """
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def write_summary(root: Path, name: str, summary: dict, markdown: str) -> None:
    """Write ``root/<name>.json`` (indent 1) and ``root/<name>.md``, each atomically, and print the Markdown."""
    dump_json(root / f"{name}.json", summary)
    write_text(root / f"{name}.md", markdown)
    print(markdown)


def command(script: str) -> str:
    """This invocation's command line as a summary names it: ``python <script> <arguments>``."""
    return f"python {script} " + " ".join(sys.argv[1:])


def machine() -> dict:
    """The machine a summary was made on: its node name, cores and processor."""
    return {"node": platform.node(), "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}
