"""Traveling-heads datasets: the data model, readers and validation."""

from mrharmony.data.dataset import (
    DATASET_FILE,
    DatasetSpec,
    PlatformSpec,
    Scan,
    TravelingHeads,
    load_dataset,
)

__all__ = ["DATASET_FILE", "DatasetSpec", "PlatformSpec", "Scan", "TravelingHeads", "load_dataset"]
