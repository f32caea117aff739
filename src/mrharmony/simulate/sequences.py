"""MR signal equations: tissue contrast from relaxation times and a sequence's parameters.

A site's structural contrast is the steady-state signal of its pulse sequence, evaluated for the
relaxation times of each tissue at the site's field strength, rather than a free choice of three
relative intensities: two sites with different field strengths or timings then differ in the
non-linear, sometimes non-monotone way that real scanners do.

Four kinds of sequence are modelled (see :class:`Sequence`): a magnetization-prepared rapid
gradient echo (``mprage``, T1-weighted), a spoiled gradient echo (``spgr``, T1-weighted), a
(turbo) spin echo (``tse``, T2-weighted) and a fluid-attenuated inversion recovery spin echo
(``flair``). :func:`signal` gives the SIGNED real signal of one tissue (or of arrays of
relaxation times): inversion recovery leaves tissue that has not yet crossed its null with
negative longitudinal magnetization, and a voxel that mixes such a tissue with one that has
already crossed sums the two signed signals before the scanner takes the magnitude, so that the
voxel can be darker than either tissue alone. Take the magnitude only after mixing.

Relaxation values (:data:`RELAXATION`; the numbers, with their reasons, are in comments beside it):

* grey and white matter T1, T2 and proton density at 1.5 T: the tissue parameters of the BrainWeb
  simulator (Kwan RK-S, Evans AC, Pike GB, IEEE Trans Med Imaging 1999;18:1085-1097), measured in
  vivo at 1.5 T; at 3 T, T1 and T2 measured in vivo by Wansapura JP et al. (J Magn Reson Imaging
  1999;9:531-538). Excised tissue gives longer T1, and a larger change with field (Stanisz GJ et
  al., Magn Reson Med 2005;54:507-512); what the simulator needs is the in-vivo ordering of the
  tissues and a plausible change with field.
* CSF T1: close to that of pure water at body temperature and nearly the same at both fields
  (e.g. Rooney WD et al., Magn Reson Med 2007;57:308-318).
* CSF T2: long and hard to measure (flow and partial volume lower it); a round value within the
  reported range, a little shorter at 3 T as tissue T2 is (Lu H et al., J Magn Reson Imaging
  2005;22:13-22).
* proton density relative to CSF: the water content of grey and white matter (Whittall KP et al.,
  Magn Reson Med 1997;37:34-43; Gelman N et al., Magn Reson Med 2001;45:71-79), taken as field
  independent.

Every signal is per unit equilibrium magnetization of CSF (PD of CSF = 1) and without receive
gain: a site's scale, bias field and noise are applied elsewhere. T2 stands in for T2* in the
gradient-echo sequences (no susceptibility or field-inhomogeneity dephasing); at the short echo
times of T1-weighted gradient echoes the difference is small.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from mrharmony.config import StrictModel

TISSUES = ("csf", "gm", "wm")

#: field strength (T) -> tissue -> (T1 in ms, T2 in ms, proton density relative to CSF);
#: sources in the module docstring. GM and WM at 1.5 T: BrainWeb's in-vivo parameters (T1, T2 and
#: PD); at 3 T: Wansapura et al. 1999's in-vivo T1 and T2, with BrainWeb's PD. CSF T1: reports
#: cluster around 4.0-4.4 s with no clear field dependence; 4300 ms at both. CSF T2: reports span
#: about 1.5-2 s; 2000 ms at 1.5 T, 1800 ms at 3 T.
RELAXATION: dict[float, dict[str, tuple[float, float, float]]] = {
    1.5: {
        "csf": (4300.0, 2000.0, 1.0),
        "gm": (833.0, 83.0, 0.86),  # BrainWeb, 1.5 T
        "wm": (500.0, 70.0, 0.77),  # BrainWeb, 1.5 T
    },
    3.0: {
        "csf": (4300.0, 1800.0, 1.0),
        "gm": (1331.0, 110.0, 0.86),  # Wansapura 1999, 3 T in vivo
        "wm": (832.0, 80.0, 0.77),  # Wansapura 1999, 3 T in vivo
    },
}

#: MPRAGE gradient-echo train used when a sequence leaves it unset: spacing of its pulses (ms)
#: and their number per inversion.
DEFAULT_ECHO_SPACING_MS = 7.0
DEFAULT_READOUT_PULSES = 160

_USES = {
    "mprage": {"ti_ms", "flip_deg", "echo_spacing_ms", "readout_pulses"},
    "spgr": {"flip_deg"},
    "tse": set(),
    "flair": {"ti_ms"},
}
_REQUIRES = {"mprage": ("ti_ms", "flip_deg"), "spgr": ("flip_deg",), "tse": (), "flair": ("ti_ms",)}


class Sequence(StrictModel):
    """A pulse sequence and its timing, whose steady-state signal :func:`signal` gives.

    With ``E(t) = exp(-t / T1)`` and ``M0 = PD``, the kinds and their closed forms are:

    * ``mprage``: magnetization-prepared rapid gradient echo (3D T1-weighted). A non-selective
      inversion every ``tr_ms``; ``ti_ms`` after it, the centre of a train of ``readout_pulses``
      pulses of flip ``a`` spaced ``echo_spacing_ms`` (pulse ``n // 2`` of the train, counted from
      0, samples the centre of k-space); then free recovery until the next inversion. Between
      pulses, ``Mz <- Mz cos(a) E(tau) + M0 (1 - E(tau))``, a recursion that approaches
      ``M* = M0 (1 - E(tau)) / (1 - cos(a) E(tau))`` geometrically with ratio
      ``q = cos(a) E(tau)`` (an effective ``T1* = -tau / ln q``). Requiring ``Mz`` to be the same
      before every inversion gives the steady state before inversion ``Mss``; the signal is
      ``sin(a) Mz(centre) exp(-TE / T2)``, signed (closed form derived in :func:`_mprage`; compare
      Deichmann et al., NeuroImage 2000;12:112-127).
    * ``spgr``: spoiled gradient echo (FLASH, 3D T1-weighted), perfect spoiling:
      ``M0 sin(a) (1 - E(TR)) / (1 - cos(a) E(TR)) exp(-TE / T2)``.
    * ``tse``: (turbo) spin echo, T2-weighted, with the refocused train summarised by its effective
      echo time and the longitudinal magnetization assumed reset by each excitation:
      ``M0 (1 - E(TR)) exp(-TE / T2)``.
    * ``flair``: inversion recovery followed by a spin-echo readout at ``ti_ms``:
      ``M0 (1 - 2 E(TI) + E(TR)) exp(-TE / T2)``, signed: fluid is nulled near
      ``TI = T1 ln(2 / (1 + E(TR)))``.

    A parameter that a kind does not use (``flip_deg`` of a spin echo, ``ti_ms`` of ``spgr`` or
    ``tse``, the readout train of anything but ``mprage``) is an error, as is one it needs left out.
    """

    kind: Literal["mprage", "spgr", "tse", "flair"] = Field(
        description="mprage (inversion-prepared 3D gradient echo), spgr (spoiled gradient echo), "
        "tse (turbo spin echo) or flair (inversion recovery spin echo)"
    )
    tr_ms: float = Field(
        gt=0,
        description="repetition time in ms; for mprage and flair the time between successive inversions",
    )
    te_ms: float = Field(ge=0, description="echo time in ms (the effective echo time of a spin-echo train)")
    ti_ms: float | None = Field(
        default=None,
        gt=0,
        description="inversion time in ms: for flair to the excitation, for mprage to the centre of the readout train",
    )
    flip_deg: float | None = Field(
        default=None, gt=0, le=180, description="flip angle in degrees of the gradient-echo pulses (mprage, spgr)"
    )
    echo_spacing_ms: float | None = Field(
        default=None,
        gt=0,
        description=f"mprage: time between the pulses of the readout train in ms (default {DEFAULT_ECHO_SPACING_MS})",
    )
    readout_pulses: int | None = Field(
        default=None,
        ge=1,
        description=f"mprage: number of pulses in the readout train after each inversion (default {DEFAULT_READOUT_PULSES})",
    )

    @model_validator(mode="after")
    def _parameters(self) -> Sequence:
        for name in _REQUIRES[self.kind]:
            if getattr(self, name) is None:
                raise ValueError(f"a {self.kind} sequence needs {name}.")
        for name in ("ti_ms", "flip_deg", "echo_spacing_ms", "readout_pulses"):
            if getattr(self, name) is not None and name not in _USES[self.kind]:
                raise ValueError(f"a {self.kind} sequence has no {name}: leave it out.")
        if self.te_ms >= self.tr_ms:
            raise ValueError(f"te_ms ({self.te_ms}) must be shorter than tr_ms ({self.tr_ms}).")
        if self.kind == "flair" and _set(self.ti_ms) >= self.tr_ms:
            raise ValueError(f"ti_ms ({self.ti_ms}) must be shorter than tr_ms ({self.tr_ms}).")
        if self.kind == "mprage":
            tau, n = self.train
            before, after = self._train_delays()
            if self.te_ms >= tau:
                raise ValueError(f"te_ms ({self.te_ms}) must be shorter than echo_spacing_ms ({tau}).")
            if before < 0:
                raise ValueError(
                    f"ti_ms ({self.ti_ms}) is shorter than the first half of the readout train ({(n // 2) * tau} ms)."
                )
            if after < 0:
                raise ValueError(
                    f"tr_ms ({self.tr_ms}) leaves no time for the readout train: it ends {-after} ms after the next inversion."
                )
        return self

    @property
    def train(self) -> tuple[float, int]:
        """MPRAGE's readout train: the spacing of its pulses (ms) and their number, defaults filled in.

        Returns
        -------
        tuple of (float, int)
        """
        tau = DEFAULT_ECHO_SPACING_MS if self.echo_spacing_ms is None else self.echo_spacing_ms
        n = DEFAULT_READOUT_PULSES if self.readout_pulses is None else self.readout_pulses
        return tau, n

    def _train_delays(self) -> tuple[float, float]:
        # MPRAGE: from the inversion to the first pulse of the train, and from the end of the train
        # (one spacing after its last pulse) to the next inversion
        tau, n = self.train
        before = _set(self.ti_ms) - (n // 2) * tau
        return before, self.tr_ms - before - n * tau


def _set(value: float | None) -> float:
    # a parameter that the validator of Sequence has made sure is set for the kind at hand
    if value is None:
        raise ValueError("a parameter this kind of sequence needs is not set.")
    return value


def _relaxation_arrays(t1_ms, t2_ms, pd) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t1, t2, m0 = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (t1_ms, t2_ms, pd)))
    if np.any(~(t1 > 0)) or np.any(~(t2 > 0)):
        raise ValueError("T1 and T2 must be positive.")
    return t1, t2, m0


def _mprage(seq: Sequence, t1: np.ndarray, m0: np.ndarray) -> np.ndarray:
    """Longitudinal magnetization just before the k-space-centre pulse of MPRAGE, in steady state.

    With ``A`` the delay from inversion to the first pulse, ``D`` that from the end of the train
    to the next inversion, ``E_x = exp(-x / T1)`` and ``Mss`` the magnetization before inversion:
    after inversion and ``A`` of recovery ``Mz = M0 (1 - E_A) - Mss E_A``; before the k-th pulse
    ``M* + (Mz - M*) q^k``; after the n pulses and their spacings ``M* + (Mz - M*) q^n``; after
    ``D`` of recovery that must equal ``Mss``, which, solved, gives
    ``Mss = [M0 (1 - E_D) + E_D (M* (1 - q^n) + M0 (1 - E_A) q^n)] / (1 + E_A E_D q^n)``.
    """
    tau, n = seq.train
    before, after = seq._train_delays()
    cos_a = np.cos(np.deg2rad(_set(seq.flip_deg)))
    e_tau = np.exp(-tau / t1)
    e_a = np.exp(-before / t1)
    e_d = np.exp(-after / t1)
    q = cos_a * e_tau
    m_star = m0 * (1.0 - e_tau) / (1.0 - q)
    qn = q**n
    m_ss = (m0 * (1.0 - e_d) + e_d * (m_star * (1.0 - qn) + m0 * (1.0 - e_a) * qn)) / (1.0 + e_a * e_d * qn)
    m_start = m0 * (1.0 - e_a) - m_ss * e_a
    return m_star + (m_start - m_star) * q ** (n // 2)


def signal(seq: Sequence, t1_ms, t2_ms, pd) -> np.ndarray:
    """The signed steady-state signal of a sequence for given relaxation times.

    Parameters
    ----------
    seq : Sequence
        The sequence and its timing.
    t1_ms, t2_ms : float or array_like
        Longitudinal and transverse relaxation times in ms (T2 also stands in for T2* in the
        gradient-echo kinds); positive.
    pd : float or array_like
        Proton density (equilibrium magnetization) relative to CSF.

    Returns
    -------
    numpy.ndarray
        The real, signed signal (float64), of the broadcast shape of the three inputs (0-d for
        scalars). Its magnitude, after any mixing of tissues within a voxel, is what a scanner
        shows.
    """
    t1, t2, m0 = _relaxation_arrays(t1_ms, t2_ms, pd)
    decay = np.exp(-seq.te_ms / t2)
    if seq.kind == "spgr":
        a = np.deg2rad(_set(seq.flip_deg))
        e1 = np.exp(-seq.tr_ms / t1)
        out = m0 * np.sin(a) * (1.0 - e1) / (1.0 - np.cos(a) * e1) * decay
    elif seq.kind == "tse":
        out = m0 * (1.0 - np.exp(-seq.tr_ms / t1)) * decay
    elif seq.kind == "flair":
        out = m0 * (1.0 - 2.0 * np.exp(-_set(seq.ti_ms) / t1) + np.exp(-seq.tr_ms / t1)) * decay
    else:
        out = np.sin(np.deg2rad(_set(seq.flip_deg))) * _mprage(seq, t1, m0) * decay
    return np.asarray(out, dtype=np.float64)


def _relaxation(field_t: float) -> dict[str, tuple[float, float, float]]:
    field_t = float(field_t)
    table = RELAXATION.get(field_t)
    if table is None:
        known = ", ".join(f"{b:g} T" for b in RELAXATION)
        raise ValueError(f"no relaxation times for a field strength of {field_t:g} T; known: {known}.")
    return table


def tissue_signals(seq: Sequence, field_t: float, *, t1_scale=None) -> dict[str, np.ndarray | float]:
    """Each tissue's signed signal for a sequence at a field strength.

    Parameters
    ----------
    seq : Sequence
        The sequence and its timing.
    field_t : float
        Field strength in tesla, one of the keys of :data:`RELAXATION`.
    t1_scale : dict of str to array_like, optional
        For some tissues (keys among :data:`TISSUES`), a positive factor on that tissue's T1, for
        instance per voxel (within-tissue heterogeneity); that tissue's signal is then an array of
        the factor's shape.

    Returns
    -------
    dict of str to float or numpy.ndarray
        ``{"csf": ..., "gm": ..., "wm": ...}``: a float for a tissue without a factor, an array
        for one with.

    Raises
    ------
    ValueError
        An unknown field strength, an unknown tissue in ``t1_scale``, or a factor that is not positive.
    """
    table = _relaxation(field_t)
    t1_scale = dict(t1_scale or {})
    unknown = set(t1_scale) - set(TISSUES)
    if unknown:
        raise ValueError(f"t1_scale has unknown tissues {sorted(unknown)}; tissues are {', '.join(TISSUES)}.")
    out: dict[str, np.ndarray | float] = {}
    for tissue in TISSUES:
        t1, t2, pd = table[tissue]
        if tissue in t1_scale:
            scale = np.asarray(t1_scale[tissue], dtype=np.float64)
            if np.any(~(scale > 0)):
                raise ValueError(f"t1_scale of {tissue} must be positive.")
            out[tissue] = signal(seq, t1 * scale, t2, pd)
        else:
            out[tissue] = float(signal(seq, t1, t2, pd))
    return out


def contrast(seq: Sequence, field_t: float) -> tuple[float, float, float]:
    """The relative magnitudes of pure CSF, GM and WM, the brightest being 1.

    Parameters
    ----------
    seq : Sequence
        The sequence and its timing.
    field_t : float
        Field strength in tesla, one of the keys of :data:`RELAXATION`.

    Returns
    -------
    tuple of float
        ``|S_csf|, |S_gm|, |S_wm|`` divided by the largest of the three.
    """
    signals = tissue_signals(seq, field_t)
    mags = [abs(float(signals[t])) for t in TISSUES]
    top = max(mags)
    if top == 0:
        raise ValueError("the sequence gives no signal from any tissue.")
    return (mags[0] / top, mags[1] / top, mags[2] / top)
