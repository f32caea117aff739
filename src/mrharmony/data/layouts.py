"""Dataset layouts: where the scans of a traveling-heads dataset lie, as a table of classes.

As nibabel keeps its image formats (``imageclasses.py`` lists the classes, ``loadsave.py`` asks
each in turn), mrharmony keeps its on-disk layouts here: each layout is one class that says
whether it recognises a folder (:meth:`Layout.recognises`) or a ``dataset.yaml``
(``layout: <its name>``), checks the keys of ``dataset.yaml`` that belong to it
(:meth:`Layout.check_spec`), finds the subjects and indexes the files of each (subject,
platform) scan; those that can also read a dataset's platforms from the files for ``mrharmony
describe`` do so in :meth:`Layout.describe_folder`. :data:`LAYOUTS` is the table;
:func:`mrharmony.data.load_dataset` looks a dataset's layout up in it with :func:`layout_named`.

A new layout is one class here (and its test in ``tests/data/test_layouts.py``) and one line
in :data:`LAYOUTS`.

The layouts (the data model that reads their files is :mod:`mrharmony.data.dataset`):

``mrharmony`` (:class:`PlainLayout`, what ``mrharmony simulate`` writes)
    ``<subject>/<platform>/dwi.nii.gz``, ``dwi.bval``, ``dwi.bvec``, ``mask.nii.gz``;
``mushac`` (:class:`MushacLayout`, as the MUSHAC / CDMRI challenge distributed its data)
    ``<subject>/<scanner>/<protocol>/`` with the same four files;
``bids`` (:class:`BidsLayout`, read with pybids)
    dwi runs of each subject, the platform told apart by one entity (``bids_entity``: ``ses``,
    ``acq`` or ``run``); masks from a ``..._desc-brain_mask.nii.gz`` derivative when there is
    one (:func:`find_brain_mask`), else computed.

Examples:
    >>> layout_named("mushac").name
    'mushac'
    >>> [cls.name for cls in LAYOUTS]
    ['mrharmony', 'mushac', 'bids']
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from mrharmony.errors import InputError

ENTITIES = {"ses": "session", "acq": "acquisition", "run": "run"}  # BIDS key -> pybids entity


class ScanFiles(NamedTuple):
    """The files of one scan; ``mask`` None where the scan has none (it is computed)."""

    dwi: Path
    bval: Path
    bvec: Path
    mask: Path | None

    @classmethod
    def in_folder(cls, folder: Path) -> ScanFiles:
        """The four files of the folder layouts: ``dwi.nii.gz``, ``dwi.bval``, ``dwi.bvec``, ``mask.nii.gz``."""
        return cls(folder / "dwi.nii.gz", folder / "dwi.bval", folder / "dwi.bvec", folder / "mask.nii.gz")


@dataclass(frozen=True)
class PlatformFiles:
    """One platform as :meth:`Layout.describe_folder` found it: its name, whether it is the
    input, one subject's scan of it, that scan's JSON metadata, and the ``dataset.yaml`` keys of
    the platform that the layout itself sets (MUSHAC: ``scanner`` and ``protocol``)."""

    name: str
    is_input: bool
    dwi: Path
    bval: Path
    bvec: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FolderDescription:
    """What :meth:`Layout.describe_folder` found: the subjects scanned on every platform, the
    platforms, and the top-level ``dataset.yaml`` keys of the layout (``layout`` and its own)."""

    subjects: list[str]
    platforms: list[PlatformFiles]
    keys: dict[str, str]


class Layout:
    """The contract of a layout (every class of :data:`LAYOUTS` is tested against it).

    The class answers for a layout in general: its ``name`` (the ``layout`` of
    ``dataset.yaml``), the ``own_keys`` of ``dataset.yaml`` that go with it alone,
    :meth:`recognises` (does a folder look like this layout?), :meth:`check_spec` (does a
    ``dataset.yaml`` of this layout have what the layout needs?) and :meth:`describe_folder`. An
    instance answers for one dataset, made from its spec (a
    :class:`~mrharmony.data.dataset.DatasetSpec`) and the folder its scans are in.
    """

    name: ClassVar[str]
    own_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec, data_root: Path):
        self.spec = spec
        self.data_root = Path(data_root)

    @classmethod
    def recognises(cls, folder: Path) -> bool:
        """Whether ``folder`` holds scans in this layout."""
        raise NotImplementedError

    @classmethod
    def check_spec(cls, spec) -> str | None:
        """The first problem of a ``dataset.yaml`` of this layout (as the end of a sentence), or None."""
        return None

    @classmethod
    def describe_folder(cls, data: Path, *, input_platform: str, entity: str | None = None) -> FolderDescription:
        """The subjects and platforms of the scans in ``data``, for ``mrharmony describe``.

        Raises:
            InputError: ``data`` holds no such scans, or ``input_platform`` is not among them.
        """
        raise NotImplementedError(f"the {cls.name} layout cannot describe a folder")

    @property
    def input_platform(self):
        return next(p for p in self.spec.platforms if p.role == "input")

    def find_subjects(self) -> list[str]:
        """The subjects of the dataset when ``dataset.yaml`` lists none, sorted."""
        raise NotImplementedError

    def index(self, subjects: list[str]) -> dict[tuple[str, str], ScanFiles]:
        """(subject, platform name) -> the files of that scan, for every platform of each subject."""
        raise NotImplementedError

    def check_subject(self, subject: str, folders: dict[str, Path]) -> None:
        """Check that the scans of ``subject`` (platform name -> its folder) are there, before their
        headers are read; layouts whose :meth:`index` already named what is missing need not."""


class FolderLayout(Layout):
    """Scans in ``<data_root>/<subject>/<folder of the platform>/``, four files each (:meth:`ScanFiles.in_folder`)."""

    def platform_folder(self, platform) -> str:
        """The folder of ``platform`` inside a subject's folder."""
        raise NotImplementedError

    def find_subjects(self) -> list[str]:
        inp = self.platform_folder(self.input_platform)
        return sorted(
            d.name
            for d in self.data_root.iterdir()
            if d.is_dir() and not d.name.startswith(".") and d.name != "derivatives" and (d / inp).is_dir()
        )

    def index(self, subjects: list[str]) -> dict[tuple[str, str], ScanFiles]:
        return {
            (s, p.name): ScanFiles.in_folder(self.data_root / s / self.platform_folder(p))
            for s in subjects
            for p in self.spec.platforms
        }

    def check_subject(self, subject: str, folders: dict[str, Path]) -> None:
        subject_dir = self.data_root / subject
        if not subject_dir.is_dir():
            raise InputError("is missing (listed as a subject in dataset.yaml).", subject_dir)
        for name, folder in folders.items():
            if not folder.is_dir():
                raise InputError(f"is missing: subject {subject} has no scan on platform {name}.", folder)


class PlainLayout(FolderLayout):
    """``<subject>/<platform>/``: the layout ``mrharmony simulate`` writes (the default)."""

    name = "mrharmony"

    @classmethod
    def recognises(cls, folder: Path) -> bool:
        return any(Path(folder).glob("*/*/dwi.nii.gz"))

    def platform_folder(self, platform) -> str:
        return platform.name


class MushacLayout(FolderLayout):
    """``<subject>/<scanner>/<protocol>/``: the MUSHAC / CDMRI challenge's folders; every platform
    of ``dataset.yaml`` names its ``scanner`` and ``protocol``."""

    name = "mushac"

    @classmethod
    def recognises(cls, folder: Path) -> bool:
        return any(Path(folder).glob("*/*/*/dwi.nii.gz"))

    @classmethod
    def check_spec(cls, spec) -> str | None:
        bare = [p.name for p in spec.platforms if not (p.scanner and p.protocol)]
        if bare:
            return f"layout mushac needs 'scanner' and 'protocol' for every platform ({bare[0]} has none)"
        return None

    def platform_folder(self, platform) -> str:
        return f"{platform.scanner}/{platform.protocol}"

    @classmethod
    def describe_folder(cls, data: Path, *, input_platform: str, entity: str | None = None) -> FolderDescription:
        """Platforms ``<scanner>_<protocol>``; ``input_platform`` is ``scanner/protocol``."""
        pairs = sorted({(p.parent.name, p.name) for p in data.glob("*/*/*") if (p / "dwi.nii.gz").is_file()})
        if not pairs:
            raise InputError("holds no <subject>/<scanner>/<protocol>/dwi.nii.gz.", data)
        names = [f"{a}/{b}" for a, b in pairs]
        if input_platform not in names:
            raise InputError(f"has no platform {input_platform!r} (found: {', '.join(names)}).", data)
        subjects = sorted(
            d.name for d in data.iterdir() if d.is_dir() and all((d / n / "dwi.nii.gz").is_file() for n in names)
        )
        if not subjects:
            raise InputError("has no subject with every scanner/protocol.", data)
        platforms = []
        for (scanner, protocol), n in zip(pairs, names):
            files = ScanFiles.in_folder(data / subjects[0] / n)
            platforms.append(
                PlatformFiles(
                    f"{scanner}_{protocol}",
                    n == input_platform,
                    files.dwi,
                    files.bval,
                    files.bvec,
                    json_sidecar(files.dwi),
                    {"scanner": scanner, "protocol": protocol},
                )
            )
        return FolderDescription(subjects, platforms, {"layout": cls.name})


def json_sidecar(dwi: Path) -> dict[str, Any]:
    """The JSON sidecar beside an image (``<name>.json``), or {} when there is none."""
    side = dwi.with_name(dwi.name.split(".")[0] + ".json")
    try:
        return json.loads(side.read_text()) if side.is_file() else {}
    except ValueError:
        raise InputError("is not valid JSON.", side) from None


def open_bids(root: Path):
    """The pybids ``BIDSLayout`` of a BIDS dataset (not validated: derivatives and extra files are fine)."""
    try:
        from bids import BIDSLayout
    except ImportError:  # pragma: no cover - pybids is a dependency
        raise InputError("reading BIDS needs the pybids package (pip install pybids).", root) from None
    if not (root / "dataset_description.json").is_file():
        raise InputError("is not a BIDS dataset (no dataset_description.json).", root)
    return BIDSLayout(root, validate=False)


def find_brain_mask(dwi: Path, root: Path) -> Path | None:
    """A brain mask derivative of a dwi image of the BIDS dataset ``root``:
    ``<name>_desc-brain_mask.nii.gz`` beside it or at the same place under
    ``derivatives/<pipeline>/``; None when there is none."""
    stem = dwi.name.split(".")[0].removesuffix("_dwi")
    name = f"{stem}_desc-brain_mask.nii.gz"
    rel = dwi.parent.relative_to(root)
    for candidate in [dwi.parent / name, *sorted((root / "derivatives").glob(f"*/{rel}/{name}"))]:
        if candidate.is_file():
            return candidate
    return None


def _dwi_runs(root: Path, entity: str) -> dict[tuple[str, str], list]:
    """(subject, platform) -> the dwi runs (pybids file, layout) of a BIDS dataset."""
    layout = open_bids(root)
    key = ENTITIES[entity]
    runs: dict[tuple[str, str], list] = {}
    for f in layout.get(suffix="dwi", extension=[".nii.gz", ".nii"], return_type="object"):
        ent = f.get_entities()
        if key not in ent:
            continue
        runs.setdefault((f"sub-{ent['subject']}", str(ent[key])), []).append((f, layout))
    return runs


class BidsLayout(Layout):
    """A BIDS dataset whose subjects have dwi runs on several platforms, the platform being the
    value of one entity (``bids_entity``), each platform named by that value."""

    name = "bids"
    own_keys = ("bids_entity",)

    @classmethod
    def recognises(cls, folder: Path) -> bool:
        return (Path(folder) / "dataset_description.json").is_file()

    @classmethod
    def check_spec(cls, spec) -> str | None:
        if spec.bids_entity is None:
            return "'bids_entity' goes with layout bids, and layout bids needs it"
        return None

    @cached_property
    def runs(self) -> dict[tuple[str, str], list]:
        return _dwi_runs(self.data_root, self.spec.bids_entity)

    def find_subjects(self) -> list[str]:
        """The subjects with a dwi run on every platform."""
        found = sorted({s for s, _ in self.runs})
        return [s for s in found if all((s, p.name) in self.runs for p in self.spec.platforms)]

    def index(self, subjects: list[str]) -> dict[tuple[str, str], ScanFiles]:
        root, entity = self.data_root, self.spec.bids_entity
        found = {s for s, _ in self.runs}
        missing = [s for s in subjects if s not in found]
        if missing:
            raise InputError(f"has no dwi runs for subject {missing[0]}.", root)
        index = {}
        for s in subjects:
            for p in self.spec.platforms:
                name = p.name
                files = self.runs.get((s, name), [])
                if not files:
                    raise InputError(
                        f"has no dwi run with {entity}-{name} for subject {s} (platform {name}).", root / s
                    )
                if len(files) > 1:
                    names = ", ".join(f.filename for f, _ in files)
                    raise InputError(
                        f"holds {len(files)} dwi runs with {entity}-{name} for subject {s} ({names}); "
                        "keep one per platform or tell them apart by another entity.",
                        root / s,
                    )
                f, layout = files[0]
                dwi = Path(f.path)
                bval, bvec = layout.get_bval(f.path), layout.get_bvec(f.path)
                if not bval or not bvec:
                    raise InputError("has no .bval / .bvec beside it or inherited.", dwi)
                index[(s, name)] = ScanFiles(dwi, Path(bval), Path(bvec), find_brain_mask(dwi, root))
        return index

    @classmethod
    def describe_folder(cls, data: Path, *, input_platform: str, entity: str | None = None) -> FolderDescription:
        """Platforms named by the values of ``entity``; ``input_platform`` is one of them."""
        if entity not in ENTITIES:
            raise InputError(f"a BIDS dataset needs --entity (one of {', '.join(ENTITIES)}).", data)
        runs = _dwi_runs(data, entity)
        values = sorted({v for _, v in runs})
        if input_platform not in values:
            raise InputError(
                f"has no dwi runs with {entity}-{input_platform} (found: {', '.join(values) or 'none'}).", data
            )
        subjects = sorted({s for s, _ in runs if all((s, v) in runs for v in values)})
        if not subjects:
            raise InputError(f"has no subject with a dwi run for every {entity} ({', '.join(values)}).", data)
        platforms = []
        for v in values:
            f, layout = runs[(subjects[0], v)][0]
            try:
                meta = dict(layout.get_metadata(f.path))
            except Exception:  # noqa: BLE001 - metadata is optional
                meta = {}
            platforms.append(
                PlatformFiles(
                    v,
                    v == input_platform,
                    Path(f.path),
                    Path(layout.get_bval(f.path)),
                    Path(layout.get_bvec(f.path)),
                    meta,
                )
            )
        return FolderDescription(subjects, platforms, {"layout": cls.name, "bids_entity": entity})


LAYOUTS: list[type[Layout]] = [PlainLayout, MushacLayout, BidsLayout]


def layout_named(name: str) -> type[Layout]:
    """The layout class called ``name`` (the ``layout`` of ``dataset.yaml``).

    Raises:
        KeyError: no layout has that name (``dataset.yaml`` is validated against :func:`layout_names` first).
    """
    for cls in LAYOUTS:
        if cls.name == name:
            return cls
    raise KeyError(name)


def layout_names() -> list[str]:
    return [cls.name for cls in LAYOUTS]


def recognise_layout(folder: Path) -> type[Layout] | None:
    """The first layout of :data:`LAYOUTS` that recognises ``folder``, or None."""
    return next((cls for cls in LAYOUTS if cls.recognises(folder)), None)


def describing_layouts() -> list[type[Layout]]:
    """The layouts that can describe a folder for ``mrharmony describe``."""
    return [cls for cls in LAYOUTS if cls.describe_folder.__func__ is not Layout.describe_folder.__func__]
