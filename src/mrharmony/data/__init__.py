"""Datasets: the data model, the layouts on disk, readers and validation.

``dataset`` (the traveling-heads model and :func:`load_dataset`), ``layouts`` (the table of
on-disk layouts), ``describe`` (``dataset.yaml`` from a folder's files), ``images`` and
``gradients`` (readers and the gradient-table writer), ``validate`` (the dataset checks),
``masks`` (computed brain masks), ``structural`` (multi-site structural datasets).
"""

from mrharmony.data.dataset import (
    DATASET_FILE,
    DatasetSpec,
    PlatformSpec,
    Scan,
    TravelingHeads,
    load_dataset,
)

__all__ = ["DATASET_FILE", "DatasetSpec", "PlatformSpec", "Scan", "TravelingHeads", "load_dataset"]
