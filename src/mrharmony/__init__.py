"""mrharmony: harmonization of MRI across scanners, sites and protocols.

The package is organised by concern (see DESIGN.md): ``data`` reads and validates
traveling-heads datasets, ``simulate`` generates synthetic ones, ``features`` turns
diffusion scans into spherical-harmonic features, and ``patches`` cuts aligned training
patches from them.
"""

__version__ = "0.1.0"

#: Version of the on-disk formats (feature sidecars, saved models). A file written by a newer
#: format version is refused with a clear error.
FORMAT_VERSION = 1
