"""Training: one loop (:func:`fit`, :func:`train_and_test`) and the :class:`Method` every method
extends.

* :mod:`.method` -- :class:`Method` (state, set-up, :meth:`~Method.optimise`, EMA, compile),
  :class:`EMA`;
* :mod:`.loop` -- :func:`fit`, :func:`train_and_test`, :class:`Run`;
* :mod:`.divergence` -- :class:`Diverged`, raised when training turns non-finite;
* :mod:`.optim` -- optimisers and learning-rate schedules;
* :mod:`.device` -- device, autocast dtype, seeding and the ``compile`` parameter;
* :mod:`.distributed` -- one run trained data-parallel on several ranks (``torchrun``).
* :mod:`.schedule` -- :class:`~.schedule.PlannedRun` (a chapter's plan of runs) and the order ranks
  take them in; :mod:`.launch` -- ``python -m lib.train.launch``, which trains a plan under torchrun.
"""
from .device import (
           amp_dtype,
           channels_last,
           device_description,
           maybe_compile,
           pick_device,
           resolve_compile,
           seed_everything,
)
from .divergence import Diverged
from .loop import FitResult, Run, StepTimer, fit, train_and_test
from .method import EMA, Method, StepCounter, move_optimizer
from .optim import decay_groups, make_optimizer, make_scheduler, warmup_cosine

__all__ = ["Diverged", "EMA", "FitResult", "Method", "Run", "StepCounter", "StepTimer", "amp_dtype", "channels_last",
           "decay_groups", "device_description", "fit", "make_optimizer", "make_scheduler",
           "maybe_compile", "move_optimizer", "pick_device", "resolve_compile", "seed_everything",
           "train_and_test", "warmup_cosine"]
