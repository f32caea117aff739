"""The dMRI wing's methods: one line each, the method's config model imported here.

A run config's ``model`` section is the config model of one of these (``method: NAME``); the
command line (``mrharmony dmri methods``), the demo, the report and the docs read this table. A
new dMRI method is its module, its test and one line here.

Attributes
----------
REGISTRY : mrharmony.engine.registry.Registry
    The wing's methods in table order: the networks of the MSP paper (kind ``network``: ``diqt``,
    ``cnn_rish``, ``shresnet``, ``cpm``, ``hned``, ``msp``) and the statistical methods used in
    practice (kind ``statistical``: ``none``, ``meanvar_global``, ``meanvar_voxel``, ``rish``,
    ``combat``), and the methods that learn from a study's sites without traveling heads (kind
    ``unpaired``: ``stylecode``).

Examples
--------
>>> from mrharmony.dmri.registry import REGISTRY
>>> REGISTRY.get("rish").kind
'statistical'
"""

from __future__ import annotations

from mrharmony.dmri.combat import ComBatConfig
from mrharmony.dmri.networks.msp import MSPConfig
from mrharmony.dmri.networks.mtl import CPMConfig, HNEDConfig
from mrharmony.dmri.networks.single import CNNRISHConfig, DIQTConfig, SHResNetConfig
from mrharmony.dmri.statistical import MeanVarGlobalConfig, MeanVarVoxelConfig, NoneConfig, RISHConfig
from mrharmony.dmri.stylecode import StyleCodeModel
from mrharmony.engine.registry import Method, Registry

REGISTRY = Registry(
    "dmri",
    (
        # the networks of the MSP paper (Blumberg et al. 2019), trained on SH patches
        Method(
            "diqt",
            "network",
            DIQTConfig,
            "DIQT: three valid 3D convolutions and a sub-voxel shuffle (one target per network)",
        ),
        Method("cnn_rish", "network", CNNRISHConfig, "CNN-RISH: five-layer 3D CNN (one target per network)"),
        Method(
            "shresnet", "network", SHResNetConfig, "SHResNet: a residual branch per SH order (one target per network)"
        ),
        Method("cpm", "network", CPMConfig, "CPM: stages that refine the predictions of every target (multi-task)"),
        Method("hned", "network", HNEDConfig, "HNED: one stream with a side output per target (multi-task)"),
        Method(
            "msp",
            "network",
            MSPConfig,
            "MSP: trained single networks informed by each other through connection networks",
        ),
        # statistical methods used in practice, fitted in one pass
        Method("none", "statistical", NoneConfig, "no harmonization: the input's SH coefficients as the target's"),
        Method(
            "meanvar_global",
            "statistical",
            MeanVarGlobalConfig,
            "each SH channel given the target platform's mean and standard deviation",
        ),
        Method(
            "meanvar_voxel",
            "statistical",
            MeanVarVoxelConfig,
            "voxelwise mean and variance alignment in a common space",
        ),
        Method(
            "rish", "statistical", RISHConfig, "linear RISH: per SH order, scale maps of the rotation-invariant energy"
        ),
        Method("combat", "statistical", ComBatConfig, "ComBat on FA and MD maps (neuroHarmonize)", extra="combat"),
        # learned from a study's sites (no traveling heads), to the scanner of given target scans
        Method(
            "stylecode",
            "unpaired",
            StyleCodeModel,
            "a scanner code from target scans and a generator conditioned on it, learned from unpaired sites",
        ),
    ),
)
