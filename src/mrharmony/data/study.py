"""A multi-site study: different people at every site, each scanned once on the site's scanner.

The folder holds ``study.yaml`` (:class:`StudySpec`: the sites, each a platform of role ``site``
with its protocol), ``participants.tsv`` (BIDS-style, tab-separated: ``participant_id`` and
``site`` required; ``age``, ``sex`` and ``group`` (``control`` or ``patient``) the covariates a
method may need, ``n/a`` where unknown) and each person's scan in ``<subject>/<site>/`` (``dwi.nii.gz``,
``dwi.bval``, ``dwi.bvec``, ``mask.nii.gz``), the folder layout of the traveling heads.
``mrharmony simulate --kind study`` writes one (:mod:`mrharmony.simulate.study`).

Examples
--------
>>> study = load_study("study")                                  # doctest: +SKIP
>>> [p.subject for p in study.at("site-01")][:2]                 # doctest: +SKIP
['sub-001', 'sub-002']
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from mrharmony.config import StrictModel, load_yaml_model
from mrharmony.data.dataset import PlatformSpec, Scan
from mrharmony.errors import InputError

STUDY_FILE = "study.yaml"
PARTICIPANTS_FILE = "participants.tsv"
#: the covariates participants.tsv may hold beside participant_id and site, in its column order
COVARIATES = ("age", "sex", "group")
GROUPS = ("control", "patient")
SEXES = ("F", "M")


class StudySpec(StrictModel):
    """The contents of ``study.yaml``."""

    name: str = "multi-site study"
    description: str | None = None
    sites: list[PlatformSpec] = Field(min_length=1)
    generated_by: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _sites(self) -> StudySpec:
        names = [p.name for p in self.sites]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"site name {dup[0]!r} is used twice")
        other = [p.name for p in self.sites if p.role != "site"]
        if other:
            raise ValueError(f"site {other[0]!r} needs role 'site'")
        return self


@dataclass(frozen=True)
class Participant:
    """One person of a study: the site that scanned them and their covariates (None: unknown)."""

    subject: str
    site: str
    age: float | None = None
    sex: str | None = None
    group: str | None = None


@dataclass
class SiteStudy:
    """A loaded study (:func:`load_study`)."""

    root: Path
    spec: StudySpec
    participants: list[Participant]

    @property
    def sites(self) -> list[str]:
        return [p.name for p in self.spec.sites]

    def site(self, name: str) -> PlatformSpec:
        return self.spec.sites[self.sites.index(name)]

    def at(self, site: str) -> list[Participant]:
        """The site's people, in the file's order."""
        return [p for p in self.participants if p.site == site]

    def participant(self, subject: str) -> Participant:
        for p in self.participants:
            if p.subject == subject:
                return p
        raise InputError(f"has no participant {subject!r}.", self.root / PARTICIPANTS_FILE)

    def scan(self, subject: str, site: str | None = None) -> Scan:
        """The person's scan at their site (``site``, if given, must be theirs: a person is scanned
        at one site only)."""
        p = self.participant(subject)
        if site is not None and site != p.site:
            raise InputError(f"lists {subject} at {p.site}, not at {site}.", self.root / PARTICIPANTS_FILE)
        return Scan.in_folder(p.subject, self.site(p.site), self.root / p.subject / p.site)

    def scans(self) -> list[Scan]:
        """Every person's scan, in the file's order."""
        return [self.scan(p.subject) for p in self.participants]

    def require(self, covariates: tuple[str, ...], subjects: list[str] | None = None) -> None:
        """Refuse, in one sentence naming participants.tsv, people without a covariate a method needs."""
        for p in self.participants if subjects is None else [self.participant(s) for s in subjects]:
            for c in covariates:
                if getattr(p, c) is None:
                    raise InputError(
                        f"gives no {c} for {p.subject}, which this method needs.", self.root / PARTICIPANTS_FILE
                    )


def write_participants(path: str | os.PathLike, people: list[dict]) -> None:
    """``participants.tsv`` of a study: ``participant_id``, ``site`` and the :data:`COVARIATES` of each person."""
    from mrharmony.io import write_text

    buf = io.StringIO()
    buf.write("\t".join(("participant_id", "site", *COVARIATES)) + "\n")
    for p in people:
        cells = [p["subject"], p["site"], *("n/a" if p.get(c) is None else str(p[c]) for c in COVARIATES)]
        buf.write("\t".join(cells) + "\n")
    write_text(Path(path), buf.getvalue())


def read_participants(path: Path, sites: list[str]) -> list[Participant]:
    """The people of ``participants.tsv``; one sentence naming the file for a missing column, an
    unknown site, a repeated participant or a covariate that is not one (``n/a``: unknown)."""
    if not path.is_file():
        raise InputError("is missing; a study lists its people with their site there.", path)
    rows = list(csv.DictReader(io.StringIO(path.read_text()), delimiter="\t"))
    header = rows[0].keys() if rows else []
    for col in ("participant_id", "site"):
        if col not in header:
            raise InputError(f"has no '{col}' column.", path)
    out, seen = [], set()
    for n, row in enumerate(rows, start=2):
        subject, site = (row.get("participant_id") or "").strip(), (row.get("site") or "").strip()
        if not subject.startswith("sub-"):
            raise InputError(f"line {n}: participant_id {subject!r} does not start with 'sub-'.", path)
        if subject in seen:
            raise InputError(f"line {n}: {subject} is listed twice.", path)
        seen.add(subject)
        if site not in sites:
            raise InputError(f"line {n}: site {site!r} of {subject} is not a site of study.yaml.", path)
        values: dict[str, Any] = {}
        for c in COVARIATES:
            v = (row.get(c) or "n/a").strip()
            if v in ("", "n/a"):
                values[c] = None
            elif c == "age":
                try:
                    values[c] = float(v)
                except ValueError:
                    raise InputError(f"line {n}: age {v!r} of {subject} is not a number.", path) from None
            elif v not in {"sex": SEXES, "group": GROUPS}[c]:
                allowed = " or ".join({"sex": SEXES, "group": GROUPS}[c])
                raise InputError(f"line {n}: {c} {v!r} of {subject} is not {allowed} (or n/a).", path)
            else:
                values[c] = v
        out.append(Participant(subject, site, **values))
    if not out:
        raise InputError("lists nobody.", path)
    return out


def load_study(root: str | os.PathLike) -> SiteStudy:
    """Read and check a study folder (see the module docstring): its spec, its people, and that
    every person's scan files are there.

    Raises
    ------
    InputError
        A missing or invalid ``study.yaml`` or ``participants.tsv``, or a person without a scan:
        one sentence naming the file.
    """
    root = Path(root)
    spec = load_yaml_model(StudySpec, root / STUDY_FILE)
    study = SiteStudy(root, spec, read_participants(root / PARTICIPANTS_FILE, [p.name for p in spec.sites]))
    for p in study.participants:
        folder = root / p.subject / p.site
        for name in ("dwi.nii.gz", "dwi.bval", "dwi.bvec"):
            if not (folder / name).is_file():
                raise InputError(f"is missing: {p.subject} was scanned at {p.site} (participants.tsv).", folder / name)
    return study
