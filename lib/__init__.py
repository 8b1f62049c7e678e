"""Library behind the CIFAR-10 report notebooks; the folders show the design.

``data``/``batches``/``augment`` (CIFAR-10, batch streams, batched augmentation), ``train`` (the one
loop and the Method base), ``models`` (networks), ``methods`` (what the loop trains), ``evaluate``
(metrics, CAM, FID, retrieval), ``chapters`` (each chapter's params -> runs -> tables), ``report``
(outputs with provenance, HTML, figures), ``params``/``spec``/``storage``/``colab`` (parameters, the
presentation's numbers, paths, Colab set-up).
"""
