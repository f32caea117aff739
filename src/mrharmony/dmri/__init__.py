from mrharmony.dmri.api import HarmonizedScan, fit, transform, transform_dwi  # noqa: F401 (the Python API)
