"""``mrharmony describe``: write the ``dataset.yaml`` of a folder of scans from their files.

The layout of the folder (one of :data:`mrharmony.data.layouts.LAYOUTS` that can describe a
folder: BIDS, MUSHAC) finds the subjects scanned on every platform and one scan of each
platform; each platform's entry is read from that scan: the voxel size from the header, the
shells and directions from the gradient table, the echo time and manufacturer from the JSON
sidecar when there is one. :func:`mrharmony.data.load_dataset` then reads the dataset.

Examples:
    >>> describe("cdmri", "study", layout="mushac", input_platform="ge/st")   # doctest: +SKIP
    PosixPath('study/dataset.yaml')
"""

from __future__ import annotations

import os
from pathlib import Path

from mrharmony.data.dataset import (
    DATASET_FILE,
    DatasetSpec,
    PlatformSpec,
    write_dataset_spec,
)
from mrharmony.data.gradients import B0_THRESHOLD, read_gradients
from mrharmony.data.images import read_image
from mrharmony.data.layouts import (
    Layout,
    PlatformFiles,
    describing_layouts,
    recognise_layout,
)
from mrharmony.errors import InputError
from mrharmony.io import check_new_file


def describe(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    layout: str | None,
    input_platform: str,
    entity: str | None = None,
    name: str | None = None,
    force: bool = False,
) -> Path:
    """Write ``out/dataset.yaml`` for the scans in ``data``.

    Args:
        data: the folder of scans.
        out: where ``dataset.yaml`` goes (its ``data_root`` points back at ``data``).
        layout: the layout of ``data`` (``bids`` or ``mushac``); None: the one that recognises it.
        input_platform: the input platform: the entity value for BIDS, ``scanner/protocol`` for
            the MUSHAC layout.
        entity: for BIDS, the entity that tells the platforms apart (``ses``, ``acq`` or ``run``).
        name: the dataset's name (default: the folder's).
        force: overwrite an existing ``dataset.yaml``.

    Raises:
        InputError: as one sentence naming the folder or file.
    """
    data, out = Path(data).resolve(), Path(out)
    target = check_new_file(out / DATASET_FILE, force=force)
    if not data.is_dir():
        raise InputError("is not a directory.", data)
    cls = _describing_layout(layout, data)
    found = cls.describe_folder(data, input_platform=input_platform, entity=entity)
    spec = DatasetSpec(
        name=name or data.name,
        platforms=[_platform_spec(p) for p in found.platforms],
        subjects=found.subjects,
        data_root=os.path.relpath(data, out.resolve()),
        **found.keys,
    )
    out.mkdir(parents=True, exist_ok=True)
    write_dataset_spec(out, spec)
    return target


def _describing_layout(layout: str | None, data: Path) -> type[Layout]:
    layouts = describing_layouts()
    names = sorted(cls.name for cls in layouts)
    choose = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
    if layout is None:
        cls = recognise_layout(data)
        if cls not in layouts:
            raise InputError(f"is not a folder of a layout that describe reads; pass --layout ({choose}).", data)
        return cls
    for cls in layouts:
        if cls.name == layout:
            return cls
    raise InputError(f"unknown layout {layout!r}; choose {choose}.")


def _platform_spec(p: PlatformFiles) -> PlatformSpec:
    """The ``dataset.yaml`` entry of a platform, read from one scan of it."""
    img = read_image(p.dwi)
    bvals, _ = read_gradients(p.bval, p.bvec, n_volumes=int(img.shape[3]) if len(img.shape) == 4 else None)
    zooms = tuple(round(float(z), 4) for z in img.header.get_zooms()[:3])
    dw = bvals[bvals > B0_THRESHOLD]
    shells = sorted({float(round(b / 100.0) * 100) for b in dw})
    te = p.metadata.get("EchoTime")
    scanner = (
        " ".join(str(p.metadata[k]) for k in ("Manufacturer", "ManufacturersModelName") if p.metadata.get(k)) or None
    )
    keys = {**({"scanner": scanner} if scanner else {}), **p.keys}  # the layout's own names win
    return PlatformSpec(
        name=p.name,
        role="input" if p.is_input else "target",
        voxel_size=zooms,
        bvalues=[0.0, *shells],
        te_ms=float(te) * 1000.0 if te else None,
        n_directions=max(1, int(round(len(dw) / max(len(shells), 1)))),
        **keys,
    )
