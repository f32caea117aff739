"""Saved dMRI networks: rebuilding one from its ``model.pt``.

A saved network (``model.pt`` of a run directory, :mod:`mrharmony.engine.checkpoint`) records
what rebuilds it: the method and its settings (the ``model`` section of its run config, whose
config model builds the network), the targets and their voxel ratios, the input channels, the
patch size and the parameter count (for capacity-matched comparisons); for MSP, the model
sections of its first-stage networks.
"""

from __future__ import annotations

import os

from mrharmony.engine.checkpoint import load_weights, model_file, read_checkpoint


def load_model(path: str | os.PathLike):
    """Rebuild a saved network: ``(module, meta)``; ``path`` is ``model.pt`` or its run directory."""
    from mrharmony.dmri.config import absolute_paths
    from mrharmony.dmri.run_config import model_config

    path = model_file(path)
    obj = read_checkpoint(path)
    cfg = model_config(obj["meta"]["model"])
    meta = absolute_paths(obj["meta"], path.parent, cfg.meta_paths)
    net = cfg.build_saved(meta)
    if meta.get("position_channels"):  # training.inputs: sh+position (models made before it have none)
        net = cfg.with_position(net, meta["ratios"], meta["in_channels"])
    load_weights(net, obj, path)
    return net, meta
