"""The one registry of mrharmony's methods: name -> where the method lives, its family and kind.

Each line names a method's config model (``module:Class``); the config model is the method's
builder (``build``), and its ``harmonizer`` loads what a run saved. The command line, the demo,
the run configs (whose ``model`` section is the union of a family's config models) and the docs
read this table, so a new method is its module, its test and one line here.

Nothing is imported until a method is asked for: listing names (``mrharmony --help``) stays
instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module


@dataclass(frozen=True)
class Method:
    name: str
    #: ``dmri`` (SH features of traveling heads) or ``structural`` (images of sites)
    family: str
    #: ``network`` (trained by the engine on SH patches), ``statistical`` (fitted in one pass),
    #: ``image`` (trained by the engine on image crops), ``intensity`` (nothing to learn)
    kind: str
    #: ``module:Class`` of its config model (networks, statistical and image methods: the model
    #: section of a run config, which builds the method) or of its harmonizer (intensity baselines)
    ref: str
    #: one line for tables and help
    summary: str
    #: the optional extra of mrharmony it needs (``pip install 'mrharmony[EXTRA]'``), if any
    extra: str | None = None

    def load(self):
        """The class ``ref`` names."""
        module, _, attr = self.ref.partition(":")
        return getattr(import_module(module), attr)


METHODS: tuple[Method, ...] = (
    # dMRI: the networks of the MSP paper (Blumberg et al. 2019), trained on SH patches
    Method("diqt", "dmri", "network", "mrharmony.dmri.networks.single:DIQTConfig",
           "DIQT: three valid 3D convolutions and a sub-voxel shuffle (one target per network)"),
    Method("cnn_rish", "dmri", "network", "mrharmony.dmri.networks.single:CNNRISHConfig",
           "CNN-RISH: five-layer 3D CNN (one target per network)"),
    Method("shresnet", "dmri", "network", "mrharmony.dmri.networks.single:SHResNetConfig",
           "SHResNet: a residual branch per SH order (one target per network)"),
    Method("cpm", "dmri", "network", "mrharmony.dmri.networks.mtl:CPMConfig",
           "CPM: stages that refine the predictions of every target (multi-task)"),
    Method("hned", "dmri", "network", "mrharmony.dmri.networks.mtl:HNEDConfig",
           "HNED: one stream with a side output per target (multi-task)"),
    Method("msp", "dmri", "network", "mrharmony.dmri.networks.msp:MSPConfig",
           "MSP: trained single networks informed by each other through connection networks"),
    # dMRI: statistical methods used in practice, fitted in one pass
    Method("none", "dmri", "statistical", "mrharmony.dmri.statistical:NoneConfig",
           "no harmonization: the input's SH coefficients as the target's"),
    Method("meanvar_global", "dmri", "statistical", "mrharmony.dmri.statistical:MeanVarGlobalConfig",
           "each SH channel given the target platform's mean and standard deviation"),
    Method("meanvar_voxel", "dmri", "statistical", "mrharmony.dmri.statistical:MeanVarVoxelConfig",
           "voxelwise mean and variance alignment in a common space"),
    Method("rish", "dmri", "statistical", "mrharmony.dmri.statistical:RISHConfig",
           "linear RISH: per SH order, scale maps of the rotation-invariant energy"),
    Method("combat", "dmri", "statistical", "mrharmony.dmri.combat:ComBatConfig",
           "ComBat on FA and MD maps (neuroHarmonize)", extra="combat"),
    # structural: image-to-image methods trained by the engine
    Method("hail", "structural", "image", "mrharmony.structural.hail:HAILConfig",
           "HAIL: one-shot style transfer (AdaIN) with a consistency loss"),
    Method("ihf", "structural", "image", "mrharmony.structural.ihf:IHFConfig",
           "IHF-Harmony: unpaired harmonization through a hierarchy flow (flow: squeeze, the exactly invertible "
           "variant ihf_squeeze)"),
    # structural: one-shot intensity baselines (nothing to train)
    Method("none", "structural", "intensity", "mrharmony.structural.intensity:NoHarmonization",
           "no harmonization: the input as it is"),
    Method("zscore", "structural", "intensity", "mrharmony.structural.intensity:ZScoreHarmonizer",
           "the brain's mean and standard deviation of the target image (intensity-normalization)"),
    Method("whitestripe", "structural", "intensity", "mrharmony.structural.intensity:WhiteStripeHarmonizer",
           "WhiteStripe: the white-matter stripe's mean and standard deviation of the target image"),
    Method("nyul", "structural", "intensity", "mrharmony.structural.intensity:NyulHarmonizer",
           "Nyul histogram matching to the target image's landmarks"),
)


def methods(family: str | None = None, kind: str | None = None) -> list[Method]:
    """The registered methods, in table order, of one family and/or kind."""
    return [m for m in METHODS if (family is None or m.family == family) and (kind is None or m.kind == kind)]


def names(family: str | None = None, kind: str | None = None) -> list[str]:
    return [m.name for m in methods(family, kind)]


def get(name: str, family: str) -> Method:
    """The method ``name`` of ``family``; KeyError for an unknown one."""
    for m in METHODS:
        if m.name == name and m.family == family:
            return m
    raise KeyError(name)


def config_models(family: str, kinds: tuple[str, ...] | None = None) -> list[type]:
    """The config models of a family's methods (imports their modules)."""
    return [m.load() for m in methods(family) if kinds is None or m.kind in kinds]
