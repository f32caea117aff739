"""MR signal equations of the structural simulator (mrharmony.simulate.sequences)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from mrharmony.simulate.sequences import (
    RELAXATION,
    TISSUES,
    Sequence,
    contrast,
    signal,
    tissue_signals,
)

# realistic protocols per field strength (ADNI-like MPRAGE, a FLASH, clinical T2 TSE and FLAIR)
PROTOCOLS = {
    ("T1w", 3.0): Sequence(kind="mprage", tr_ms=2300, ti_ms=900, te_ms=3.0, flip_deg=9),
    ("T1w", 1.5): Sequence(kind="mprage", tr_ms=2400, ti_ms=1000, te_ms=3.6, flip_deg=8),
    ("T1w-spgr", 3.0): Sequence(kind="spgr", tr_ms=20, te_ms=5, flip_deg=25),
    ("T1w-spgr", 1.5): Sequence(kind="spgr", tr_ms=20, te_ms=5, flip_deg=25),
    ("T2w", 3.0): Sequence(kind="tse", tr_ms=6000, te_ms=100),
    ("T2w", 1.5): Sequence(kind="tse", tr_ms=4000, te_ms=90),
    ("FLAIR", 3.0): Sequence(kind="flair", tr_ms=9000, ti_ms=2500, te_ms=120),
    ("FLAIR", 1.5): Sequence(kind="flair", tr_ms=9000, ti_ms=2500, te_ms=110),
}


def magnitudes(seq, field_t):
    signals = tissue_signals(seq, field_t)
    return {t: abs(signals[t]) for t in TISSUES}


@pytest.mark.parametrize("key", sorted(PROTOCOLS))
def test_tissue_order_of_each_modality(key):
    modality, field_t = key
    m = magnitudes(PROTOCOLS[key], field_t)
    if modality.startswith("T1w"):
        assert m["csf"] < m["gm"] < m["wm"]
    elif modality == "T2w":
        assert m["wm"] < m["gm"] < m["csf"]
    else:
        c = contrast(PROTOCOLS[key], field_t)
        assert c[0] < 0.15
        assert m["wm"] < m["gm"]
    c = contrast(PROTOCOLS[key], field_t)
    assert max(c) == pytest.approx(1.0)
    assert min(c) > 0


def test_tse_at_a_hand_computed_point():
    seq = Sequence(kind="tse", tr_ms=5000, te_ms=100)
    # 0.8 (1 - e^-5) e^-1 = 0.8 * 0.993262053 * 0.367879441
    assert float(signal(seq, 1000.0, 100.0, 0.8)) == pytest.approx(0.29232055, rel=1e-6)


def test_flair_at_a_hand_computed_point_keeps_the_sign():
    seq = Sequence(kind="flair", tr_ms=9000, ti_ms=1000, te_ms=100)
    # T1 = T2 = 1000: (1 - 2 e^-1 + e^-9) e^-0.1 = 0.264364 * 0.904837
    assert float(signal(seq, 1000.0, 1000.0, 1.0)) == pytest.approx(0.2392069, rel=1e-6)
    # T1 = 4000 has not crossed its null at TI = 1000: negative
    assert float(signal(seq, 4000.0, 1000.0, 1.0)) < 0


def bloch_mprage(seq, t1, t2, pd, repetitions=30):
    """Mz step by step: inversion, recovery, the pulse train (cos a then recovery over a spacing),
    recovery to the next inversion; the signal is taken at pulse n // 2 of the last repetition."""
    tau = seq.echo_spacing_ms or 7.0
    n = seq.readout_pulses or 160
    a = np.deg2rad(seq.flip_deg)
    t1 = np.asarray(t1, dtype=float)
    pd = np.asarray(pd, dtype=float)

    def relax(mz, dt):
        e = np.exp(-dt / t1)
        return pd + (mz - pd) * e

    start = seq.ti_ms - (n // 2) * tau
    end = seq.tr_ms - start - n * tau
    mz = pd.copy()
    for _ in range(repetitions):
        mz = relax(-mz, start)
        for k in range(n):
            if k == n // 2:
                sampled = mz * np.sin(a)
            mz = relax(mz * np.cos(a), tau)
        mz = relax(mz, end)
    return sampled * np.exp(-seq.te_ms / np.asarray(t2, dtype=float))


@pytest.mark.parametrize(
    "seq",
    [
        PROTOCOLS[("T1w", 3.0)],
        PROTOCOLS[("T1w", 1.5)],
        Sequence(kind="mprage", tr_ms=2000, ti_ms=600, te_ms=2.5, flip_deg=12, echo_spacing_ms=6.0, readout_pulses=151),
        Sequence(kind="mprage", tr_ms=3000, ti_ms=300, te_ms=2.0, flip_deg=7, echo_spacing_ms=5.0, readout_pulses=100),
    ],
)
def test_mprage_closed_form_matches_a_bloch_simulation(seq):
    t1 = np.array([4300.0, 1820.0, 1084.0, 884.0, 600.0, 300.0])
    t2 = np.array([1800.0, 99.0, 69.0, 72.0, 60.0, 50.0])
    pd = np.array([1.0, 0.8, 0.7, 0.7, 0.6, 0.9])
    expected = bloch_mprage(seq, t1, t2, pd)
    got = signal(seq, t1, t2, pd)
    # within 1% of the largest tissue signal (a tissue near its null has a small signal)
    np.testing.assert_allclose(got, expected, rtol=0, atol=0.01 * np.abs(expected).max())
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    # the short-TI protocol sees long-T1 tissue still inverted: the sign is kept
    if seq.ti_ms == 300:
        assert got[0] < 0 < got[-1]


def test_spgr_matches_the_iterated_pulse_recursion():
    seq = Sequence(kind="spgr", tr_ms=20, te_ms=5, flip_deg=25)
    t1 = np.array([4300.0, 1820.0, 1084.0, 500.0])
    t2 = np.array([1800.0, 99.0, 69.0, 50.0])
    pd = np.array([1.0, 0.8, 0.7, 0.9])
    a = np.deg2rad(seq.flip_deg)
    e1 = np.exp(-seq.tr_ms / t1)
    mz = pd.copy()
    for _ in range(3000):
        mz = mz * np.cos(a) * e1 + pd * (1 - e1)
    expected = mz * np.sin(a) * np.exp(-seq.te_ms / t2)
    np.testing.assert_allclose(signal(seq, t1, t2, pd), expected, rtol=1e-6)


def test_flair_partial_volume_of_csf_and_wm_is_darker_than_either():
    # TI short of CSF's null: CSF negative, WM positive
    seq = Sequence(kind="flair", tr_ms=9000, ti_ms=2000, te_ms=120)
    s = tissue_signals(seq, 3.0)
    assert s["csf"] < 0 < s["wm"]
    f = np.linspace(0.0, 1.0, 101)  # fraction of CSF
    mixed = np.abs(f * s["csf"] + (1 - f) * s["wm"])
    assert mixed[50] < min(abs(s["csf"]), abs(s["wm"]))
    # not monotone in the fraction: down to (near) zero inside, then up again
    low = int(np.argmin(mixed))
    assert 0 < low < 100
    assert np.all(np.diff(mixed[: low + 1]) < 0)
    assert np.all(np.diff(mixed[low:]) > 0)
    assert mixed[low] < 0.05 * min(abs(s["csf"]), abs(s["wm"]))


@pytest.mark.parametrize("modality", ["T1w", "T1w-spgr", "T2w", "FLAIR"])
def test_contrast_depends_on_field_strength(modality):
    seq = PROTOCOLS[(modality, 3.0)]
    low, high = np.asarray(contrast(seq, 1.5)), np.asarray(contrast(seq, 3.0))
    assert np.max(np.abs(low / high - 1)) > 0.01  # some tissue's relative brightness changes


def test_t1_scale_broadcasts_and_longer_t1_darkens_wm_in_mprage():
    seq = PROTOCOLS[("T1w", 3.0)]
    scale = np.linspace(0.8, 1.2, 5)[:, None] * np.ones((1, 3))
    s = tissue_signals(seq, 3.0, t1_scale={"wm": scale})
    assert isinstance(s["gm"], float) and isinstance(s["csf"], float)
    assert s["wm"].shape == (5, 3)
    assert np.all(np.diff(np.abs(s["wm"]), axis=0) < 0)
    plain = tissue_signals(seq, 3.0)
    np.testing.assert_allclose(s["wm"][2], plain["wm"], rtol=1e-12)
    # scalar and per-voxel factors on several tissues at once
    s2 = tissue_signals(seq, 3.0, t1_scale={"gm": 1.1, "csf": np.ones(4)})
    assert abs(s2["gm"]) < abs(plain["gm"])
    assert s2["csf"].shape == (4,)


def test_signal_broadcasts_its_inputs():
    seq = PROTOCOLS[("T2w", 3.0)]
    out = signal(seq, np.array([[800.0], [1000.0], [1200.0], [4000.0]]), np.array([60.0, 80.0, 100.0]), 0.7)
    assert out.shape == (4, 3) and out.dtype == np.float64
    assert float(out[1, 2]) == pytest.approx(float(signal(seq, 1000.0, 100.0, 0.7)))


def test_relaxation_table():
    assert set(RELAXATION) == {1.5, 3.0}
    for table in RELAXATION.values():
        assert set(table) == set(TISSUES)
        t1 = {t: table[t][0] for t in TISSUES}
        t2 = {t: table[t][1] for t in TISSUES}
        assert t1["wm"] < t1["gm"] < t1["csf"]
        assert t2["wm"] < t2["gm"] < t2["csf"]
        assert table["csf"][2] == 1.0
    assert RELAXATION[3.0]["gm"][0] > RELAXATION[1.5]["gm"][0]
    assert RELAXATION[3.0]["wm"][0] > RELAXATION[1.5]["wm"][0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "mprage", "tr_ms": 2300, "te_ms": 3, "flip_deg": 9},  # no TI
        {"kind": "mprage", "tr_ms": 2300, "ti_ms": 900, "te_ms": 3},  # no flip
        {"kind": "flair", "tr_ms": 9000, "te_ms": 120},  # no TI
        {"kind": "spgr", "tr_ms": 20, "te_ms": 5},  # no flip
        {"kind": "tse", "tr_ms": 5000, "te_ms": 100, "ti_ms": 2000},  # TI of a plain spin echo
        {"kind": "spgr", "tr_ms": 20, "te_ms": 5, "flip_deg": 25, "readout_pulses": 100},  # MPRAGE's train
        {"kind": "tse", "tr_ms": 100, "te_ms": 120},  # TE past TR
        {"kind": "flair", "tr_ms": 9000, "ti_ms": 9500, "te_ms": 120},  # TI past TR
        {"kind": "mprage", "tr_ms": 2300, "ti_ms": 400, "te_ms": 3, "flip_deg": 9},  # train starts before the inversion
        {
            "kind": "mprage",
            "tr_ms": 1400,
            "ti_ms": 900,
            "te_ms": 3,
            "flip_deg": 9,
        },  # train runs past the next inversion
        {"kind": "mprage", "tr_ms": 2300, "ti_ms": 900, "te_ms": 8, "flip_deg": 9},  # TE past the echo spacing
        {"kind": "dess", "tr_ms": 20, "te_ms": 5},
        {"kind": "tse", "tr_ms": 5000, "te_ms": 100, "extra": 1},
    ],
)
def test_bad_sequences_are_refused(kwargs):
    with pytest.raises(ValidationError):
        Sequence(**kwargs)


def test_unknown_field_strength_and_tissue():
    seq = PROTOCOLS[("T2w", 3.0)]
    with pytest.raises(ValueError, match=r"7 T.*1\.5 T, 3 T"):
        tissue_signals(seq, 7.0)
    with pytest.raises(ValueError, match="1.5 T"):
        contrast(seq, 2.0)
    with pytest.raises(ValueError, match="unknown tissues"):
        tissue_signals(seq, 3.0, t1_scale={"lesion": 1.2})
    with pytest.raises(ValueError, match="positive"):
        tissue_signals(seq, 3.0, t1_scale={"wm": np.array([1.0, 0.0])})
    assert contrast(seq, 3) == contrast(seq, 3.0)
