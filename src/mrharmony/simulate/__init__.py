"""Synthetic traveling heads: anatomy from the MNI152 template, dMRI platforms, and the generator."""

from mrharmony.simulate.generator import render_scan, simulate, subject_names
from mrharmony.simulate.params import PRESETS, SimPlatform, load_platforms

__all__ = ["PRESETS", "SimPlatform", "load_platforms", "render_scan", "simulate", "subject_names"]
