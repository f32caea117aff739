"""mrharmony: harmonization of MRI across scanners, sites and protocols.

The package is two wings over shared floors (docs/architecture.md):

* ``dmri``: diffusion MRI of traveling heads: SH features, the networks of the MSP paper and
  the statistical methods practice uses, their training, evaluation, ``apply`` and the BIDS App;
* ``structural``: structural images of sites: HAIL, IHF-Harmony and the intensity baselines,
  their training, metrics, evaluation and ``apply``;
* ``engine``: the one training loop, run directories, checkpoints and the registry of methods;
* ``simulate``: the synthetic traveling heads (dMRI platforms, structural sites);
* ``data``: datasets, their layouts (plain, MUSHAC, BIDS), validation, images, masks, splits;
* ``report`` and ``cli`` on top; small utilities (``config``, ``io``, ``errors``, ``progress``,
  ``registration``, ``stats``) below.
"""

__version__ = "0.1.0"

#: Version of the on-disk formats (feature sidecars, saved models). A file written by a newer
#: format version is refused with a clear error. 2: saved models and training states hold only
#: tensors and plain values, and are opened without running code (how version 1 opens:
#: mrharmony.engine.checkpoint).
FORMAT_VERSION = 2
