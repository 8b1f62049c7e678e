"""Library behind the CIFAR-10 report notebooks: data, models, the training loop, evaluation and report helpers.

Modules: ``params`` (chapter parameters and profiles), ``data`` (CIFAR-10 tensors, splits, batched
augmentation), ``models`` (classifier registry), ``train`` (the one training loop), ``supervised``
(chapter-1 glue), ``plots`` (figures), ``report`` (saving outputs with provenance, manifest, index page),
``spec`` (the presentation's numbers).
"""
