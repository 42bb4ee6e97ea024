"""Training: methods, trainer, checkpoints and the deployable training-time layers.

- :mod:`.tet` (TET loss, SDT), :mod:`.stbp` (NeuNorm, voting MSE), :mod:`.stdb` (hybrid
  conversion + STDB fine-tuning); the surrogates live in :mod:`snn2loihi.neuron.surrogate`.
- :mod:`.modules` (host encoder, readout, batch norm folded for the chip), :mod:`.residual`,
  :mod:`.model` (:class:`~.model.SNNClassifier` and its chip-side scores), :mod:`.spec`
  (architectures as plain data).
- :mod:`.recipe`, :mod:`.trainer` (stages, checkpoints, resume, DDP), :mod:`.loop` (the
  epoch loop, ``fit``/``evaluate``), :mod:`.checkpoint`, :mod:`.distributed`,
  :mod:`.inputs` (datasets and input encodings), :mod:`.deploy` (export, emulator, Lava).
"""
