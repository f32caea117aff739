"""Synthetic traveling heads: anatomy from the MNI152 template, dMRI platforms, and the generator.

:func:`simulate` writes a dataset (``mrharmony simulate``), :func:`render_scan` renders one of its
scans again (without noise, or as a rescan), :func:`load_platforms` reads a platforms file;
:data:`PRESETS` are the fields of view and subject counts (``tiny``, ``demo``, ``mushac``). The
structural sites are :mod:`mrharmony.simulate.structural`.

Examples
--------
>>> from mrharmony.simulate import simulate, render_scan
>>> root = simulate("th-tiny", preset="tiny", seed=0, quiet=True)              # doctest: +SKIP
>>> scan = render_scan(root, "sub-01", "prisma_st", noise=False)               # doctest: +SKIP
>>> scan.dwi.shape, scan.bvals.shape                                           # doctest: +SKIP
"""

from mrharmony.simulate.generator import render_scan, simulate, subject_names
from mrharmony.simulate.params import PRESETS, SimPlatform, load_platforms

__all__ = ["PRESETS", "SimPlatform", "load_platforms", "render_scan", "simulate", "subject_names"]
