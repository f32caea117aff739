"""IHF-Harmony (arXiv 2602.21536): harmonizing images of any modality between sites from
unpaired data, through a flow conditioned on the style code of one target image.

Two flows, selected by the config's ``flow``:

* ``hierarchy`` (the default; rows named ``ihf``): the paper's flow as its public code builds
  it, :class:`~mrharmony.structural.ihf.paper_flow.HierarchyFlow` (lifting by subtracted
  deltas, decoding with artefact-aware normalization). Not invertible from its output;
* ``squeeze`` (rows named ``ihf_squeeze``): a variant of this project, exactly invertible by
  construction, :class:`~mrharmony.structural.ihf.squeeze_flow.SqueezeIHF` (its flow
  :class:`~mrharmony.structural.ihf.squeeze_flow.SqueezeFlow`: space-to-channel squeezes and
  subtractive coupling).

Names say which flow is which: ``HierarchyFlow`` and the names of :mod:`.paper_flow` are the
paper's; every ``Squeeze*`` name and the names of :mod:`.squeeze_flow` are the variant's. Saved
models name their flow in ``meta['model']['flow']`` (``hierarchy`` or ``squeeze``; models saved
before that key existed are the squeeze design).

The modules, one responsibility each:

* :mod:`.squeeze_flow`: the squeeze variant (squeeze, coupling, flow blocks, its artefact
  encoder and normalization, the whole network);
* :mod:`.paper_flow`: the paper's hierarchy flow (lift blocks, its style encoder and
  conditioned normalization);
* :mod:`.vgg`: the VGG-19 feature encoder that the losses can use, and its weights loader;
* :mod:`.trainee`: what a run trains (the flow and the losses' fixed feature encoder);
* :mod:`.losses`: the phase-2 losses of each flow;
* :mod:`.inference`: applying a flow to whole volumes and restoring the input (numpy);
* :mod:`.method`: the config model, the network a model section describes, the harmonizer.

The building blocks shared with HAIL are in :mod:`mrharmony.structural.blocks`. This package
exports the method's public face only: :class:`IHFConfig` (named in the registry) and
:class:`IHFHarmonizer`.

Examples
--------
>>> from mrharmony.structural.ihf import IHFHarmonizer
>>> h = IHFHarmonizer.load("runs/ihf_squeeze")                         # doctest: +SKIP
>>> result = h.transform(image, target=target_image)                   # doctest: +SKIP
>>> back = h.restore(result)                                           # doctest: +SKIP
"""

from mrharmony.structural.ihf.method import IHFConfig, IHFHarmonizer

__all__ = ["IHFConfig", "IHFHarmonizer"]
