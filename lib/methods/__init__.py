"""Training methods: each is a :class:`lib.train.Method` whose ``train_step(batch) -> logs`` is one
update.

:mod:`.classifier` (cross-entropy), :mod:`.vae` (negative ELBO), :mod:`.dcgan` (two optimisers),
:mod:`.ddpm` (epsilon prediction + samplers), :mod:`.ssl` (Meta Pseudo Labels, UDA, supervised
baseline).
"""
