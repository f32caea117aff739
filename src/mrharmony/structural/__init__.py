from mrharmony.structural.api import fit  # noqa: F401 (the Python API)
