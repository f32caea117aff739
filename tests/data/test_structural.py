"""``structural.yaml``: a strict model; a bad file is one sentence naming the file and the key."""

import re

import pytest
import yaml

from mrharmony.data.structural import (
    STRUCTURAL_FILE,
    SiteSpec,
    StructuralSpec,
    load_structural,
    write_structural_spec,
)
from mrharmony.errors import InputError

GOOD = {
    "kind": "structural",
    "subjects": ["sub-01", "sub-02"],
    "modalities": ["T1w", "T2w"],
    "sites": [
        {"name": "siteA", "role": "train"},
        {"name": "siteB", "role": "train"},
        {"name": "siteD", "role": "unseen"},
    ],
}


def _write(root, spec):
    root.mkdir(parents=True, exist_ok=True)
    (root / STRUCTURAL_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    return root


def test_a_good_file_is_read(tmp_path):
    ds = load_structural(_write(tmp_path / "st", GOOD))
    assert ds.subjects == ["sub-01", "sub-02"] and ds.modalities == ["T1w", "T2w"]
    assert ds.train_sites == ["siteA", "siteB"] and ds.unseen_sites == ["siteD"]
    assert ds.image_path("sub-02", "siteD", "T2w") == tmp_path / "st" / "sub-02" / "siteD" / "T2w.nii.gz"
    # modalities are optional: T1w
    ds = load_structural(_write(tmp_path / "t1", {k: v for k, v in GOOD.items() if k != "modalities"}))
    assert ds.modalities == ["T1w"]


def test_the_writer_and_the_reader_agree(tmp_path):
    spec = StructuralSpec(
        kind="structural",
        subjects=["a", "b"],
        sites=[SiteSpec(name="x", role="train"), SiteSpec(name="y", role="unseen", description="held out")],
        generated_by={"name": "test", "seed": 1},
    )
    write_structural_spec(tmp_path, spec)
    assert "description: held out" in (tmp_path / STRUCTURAL_FILE).read_text()
    ds = load_structural(tmp_path)
    assert ds.sites == spec.sites and ds.subjects == ["a", "b"] and ds.modalities == ["T1w"]


def test_a_file_of_the_older_simulator_is_read(tmp_path):
    """Before ``generated_by``, the simulator wrote its version, preset and seed at the top level
    and each site's parameters in the site's entry."""
    old = {
        "kind": "structural",
        "mrharmony_version": "0.1.0",
        "preset": {"name": "tiny", "voxel_mm": 2.0},
        "seed": 3,
        "subjects": ["sub-01"],
        "modalities": ["T1w"],
        "sites": [
            {"name": "siteA", "role": "train", "t1w": [0.25, 0.62, 1.0], "scale": 900.0},
            {"name": "siteD", "role": "unseen", "t1w": [0.3, 0.7, 1.0], "snr": 20.0},
        ],
    }
    ds = load_structural(_write(tmp_path, old))
    assert [(s.name, s.role) for s in ds.sites] == [("siteA", "train"), ("siteD", "unseen")]


BAD = {
    "unknown key": (lambda s: s.update(subject=["sub-01"]), r"unknown key 'subject'"),
    "unknown key of a site": (lambda s: s["sites"][1].update(rol="train"), r"unknown key 'sites\.1\.rol'"),
    "wrong role": (lambda s: s["sites"][2].update(role="test"), r"invalid value for 'sites\.2\.role'"),
    "not structural": (lambda s: s.update(kind="dmri"), r"invalid value for 'kind'"),
    "no kind": (lambda s: s.pop("kind"), r"missing required key 'kind'"),
    "no subjects": (lambda s: s.update(subjects=[]), r"invalid value for 'subjects'"),
    "one site": (lambda s: s.update(sites=s["sites"][:1]), r"invalid value for 'sites'"),
    "a site twice": (lambda s: s["sites"][1].update(name="siteA"), r"site name 'siteA' is used twice"),
    "a path as subject": (lambda s: s.update(subjects=["../x"]), r"subject name '\.\./x' is not a plain"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_file_is_one_sentence_naming_the_file_and_the_key(tmp_path, case):
    mutate, pattern = BAD[case]
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    mutate(spec)
    root = _write(tmp_path / "st", spec)
    with pytest.raises(InputError) as err:
        load_structural(root)
    msg = str(err.value)
    assert msg.startswith(f"{root / STRUCTURAL_FILE}: "), msg
    assert re.search(pattern, msg), msg
    assert "\n" not in msg and msg.endswith(".")


def test_a_missing_or_broken_file(tmp_path):
    with pytest.raises(InputError, match=r"structural.yaml: is missing; a structural dataset needs"):
        load_structural(tmp_path)
    (tmp_path / STRUCTURAL_FILE).write_text("sites: [unclosed\n")
    with pytest.raises(InputError, match=r"structural.yaml: is not valid YAML"):
        load_structural(tmp_path)
