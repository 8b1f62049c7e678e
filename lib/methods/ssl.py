"""Semi-supervised methods on CIFAR-10-4K: Meta Pseudo Labels with UDA, UDA alone, and supervised
only.

MPL follows Pham et al., "Meta Pseudo Labels" (CVPR 2021) and the public PyTorch reference
(kekmodel/MPL-pytorch ``main.py``): teacher loss = label-smoothed CE on labelled images + ramped UDA
consistency on confident unlabelled images + ``h * CE(T(x_strong), argmax T(x_strong))``, where
``h`` compares the student's labelled loss before and after its step on the teacher's hard pseudo
labels. Two signs exist (:data:`FEEDBACK`): the reference code, which produced the presented
numbers, uses ``after - before`` ("author's code formula", as in the paper authors' code); the
first-order derivation in the paper's appendix gives ``before - after`` (the reference keeps it as a
comment, MPL-pytorch issue #6).

Batches are :class:`lib.batches.SSLBatch` (labelled images and labels, weak and strong unlabelled
views).

Trained data-parallel (:mod:`lib.train.distributed`), each rank holds a slice of the global batch.
The UDA mask is per image, so it needs no reduction (the logged ``mask_ratio`` is averaged over
the ranks, as the reference code's log is). MPL's ``h`` compares labelled losses: by
:data:`DISTRIBUTED_FEEDBACK`, either of the global batch (the single-process step) or of each
rank's own slice (the reference code's distributed mode).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..batches import SSLBatch
from ..train import Method, StepCounter


def uda_consistency(logits_weak: torch.Tensor, logits_strong: torch.Tensor, *, temperature: float,
                    threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """UDA (Xie et al. 2020): CE of the sharpened, detached weak-view prediction against the strong
    view, on images whose confidence reaches ``threshold``. Returns
    ``(loss, mask, hard labels of the weak view)``."""
    soft = torch.softmax(logits_weak.detach().float() / temperature, dim=-1)
    confidence, hard = soft.max(dim=-1)
    mask = (confidence >= threshold).float()
    loss = (-(soft * torch.log_softmax(logits_strong.float(), dim=-1)).sum(-1) * mask).mean()
    return loss, mask, hard


# h by feedback sign: the reference code's, and the first-order derivation's
FEEDBACK = {"reference": lambda before, after: after - before,
            "derivation": lambda before, after: before - after}


# how a data-parallel MPL step forms h: from the global batch's labelled losses (their mean over
# the ranks: the single-process step) or from each rank's slice alone (kekmodel/MPL-pytorch's
# distributed mode computes dot_product per process and lets DDP average the teacher's gradients)
DISTRIBUTED_FEEDBACK = ("global", "rank")


def feedback_sign(sign: str):
    """The ``h(before, after)`` of :data:`FEEDBACK` named ``sign``, or a clear error."""
    if sign not in FEEDBACK:
        raise ValueError(f"unknown mpl_feedback {sign!r}; expected one of {sorted(FEEDBACK)}")
    return FEEDBACK[sign]


def mpl_feedback(student_loss_before: torch.Tensor, student_loss_after: torch.Tensor,
                 teacher_logits: torch.Tensor, pseudo_labels: torch.Tensor, *,
                 sign: str = "reference") -> tuple[torch.Tensor, torch.Tensor]:
    """The MPL teacher term ``h * CE(teacher_logits, pseudo_labels)``; ``h`` by :data:`FEEDBACK`.

    With the derivation's ``h = before - after``, ``h > 0`` when the student's labelled loss fell
    after learning the pseudo labels, and minimising the term *raises* the teacher's log-likelihood
    of those labels (a reward). The reference's ``h = after - before`` flips it. Returns
    ``(term, h)``.
    """
    h = feedback_sign(sign)(student_loss_before, student_loss_after).detach().float()
    return h * F.cross_entropy(teacher_logits.float(), pseudo_labels), h


class SSLMethod(Method):
    """Shared parts: the evaluated network (its EMA when there is one) and the batch size."""

    eval_name = "model"

    def batch_size(self, batch: SSLBatch) -> int:
        return len(batch.y_l) + (len(batch.x_uw) if batch.x_uw is not None else 0)

    @property
    def eval_model(self) -> nn.Module:
        ema = self.state.get("ema")
        return ema.module if ema is not None else self.state[self.eval_name]


class UDAObjective(SSLMethod):
    """The teacher objective of MPL and of the UDA baseline: label-smoothed CE on the labelled
    images plus the UDA consistency on the unlabelled views, weighted by ``lambda_u`` ramped up over
    ``uda_steps``."""

    def __init__(self, *, label_smoothing: float, temperature: float, threshold: float,
                 lambda_u: float, uda_steps: int, grad_clip: float = 0.0):
        super().__init__()
        self.counter = StepCounter()
        self.ls = label_smoothing
        self.temperature = temperature
        self.threshold = threshold
        self.lambda_u = lambda_u
        self.uda_steps = uda_steps
        self.grad_clip = grad_clip

    def uda_loss(self, logits: torch.Tensor, y_l: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective on one forward pass over ``cat([x_l, x_weak, x_strong])``."""
        n_l = len(y_l)
        loss_l = F.cross_entropy(logits[:n_l].float(), y_l, label_smoothing=self.ls)
        logits_uw, logits_us = logits[n_l:].chunk(2)
        loss_u, mask, pseudo = uda_consistency(logits_uw, logits_us, temperature=self.temperature,
                                               threshold=self.threshold)
        weight_u = self.lambda_u * min(1.0, (self.counter.value + 1) / max(1, self.uda_steps))
        return {"loss": loss_l + weight_u * loss_u, "loss_l": loss_l, "loss_u": loss_u,
                "weight_u": weight_u, "mask": mask, "pseudo": pseudo, "logits_us": logits_us}


class MetaPseudoLabels(UDAObjective):
    """MPL with UDA: one :meth:`train_step` updates the student on the teacher's hard pseudo labels,
    then the teacher on labelled CE + UDA consistency + the student's feedback (SPEC 3.3, steps
    0-3)."""

    eval_name = "student"
    compiled = ("teacher", "student")

    def __init__(self, teacher: nn.Module, student: nn.Module, *, teacher_optimizer,
                 student_optimizer, teacher_scheduler=None, student_scheduler=None,
                 ema_decay: float = 0.0, feedback: str = "reference",
                 distributed_feedback: str = "global", **objective):
        super().__init__(**objective)
        feedback_sign(feedback)  # fail at construction, not at the first step
        if distributed_feedback not in DISTRIBUTED_FEEDBACK:
            raise ValueError(f"unknown mpl_distributed_feedback {distributed_feedback!r}; expected "
                             f"one of {DISTRIBUTED_FEEDBACK}")
        self.feedback = feedback
        self.distributed_feedback = distributed_feedback
        self.teacher = teacher
        self.student = student
        self.t_opt = teacher_optimizer
        self.s_opt = student_optimizer
        self.t_sched = teacher_scheduler
        self.s_sched = student_scheduler
        self.state = {"teacher": teacher, "student": student,
                      "teacher_optimizer": teacher_optimizer,
                      "student_optimizer": student_optimizer, "step": self.counter}
        if teacher_scheduler is not None:
            self.state["teacher_scheduler"] = teacher_scheduler
        if student_scheduler is not None:
            self.state["student_scheduler"] = student_scheduler
        self.track_ema(student, ema_decay)

    def lr(self):
        """The student's learning rate: the one the reference's progress bar and log print."""
        return self.s_opt.param_groups[0]["lr"]

    def train_step(self, batch: SSLBatch):
        x_l, y_l, x_uw, x_us = batch.x_l, batch.y_l, batch.x_uw, batch.x_us
        n_l = len(y_l)
        self.teacher.train()
        self.student.train()
        with self.autocast():
            # teacher on labelled, weak and strong views at once (one BN pass, as in the reference)
            t = self.uda_loss(self.net("teacher")(torch.cat([x_l, x_uw, x_us])), y_l)

            # 0) the student learns the teacher's hard pseudo labels on the strong view
            s_logits = self.net("student")(torch.cat([x_l, x_us]))
            s_loss_l_old = F.cross_entropy(s_logits[:n_l].detach().float(), y_l)
            s_loss = F.cross_entropy(s_logits[n_l:].float(), t["pseudo"], label_smoothing=self.ls)
        self.optimise(s_loss, self.s_opt, model=self.student, scheduler=self.s_sched,
                      clip=self.grad_clip, ema=True)

        # 1) feedback: how the student's labelled loss changed, applied to the teacher's own hard
        # labels
        with self.autocast():
            with torch.no_grad():
                s_loss_l_new = F.cross_entropy(self.net("student")(x_l).float(), y_l)
            if self.shard.active and self.distributed_feedback == "global":
                s_loss_l_old, s_loss_l_new = self.shard.mean(
                    torch.stack([s_loss_l_old, s_loss_l_new])).unbind()
            t_loss_mpl, h = mpl_feedback(s_loss_l_old, s_loss_l_new, t["logits_us"],
                                         t["logits_us"].detach().argmax(-1), sign=self.feedback)
            # 2) + 3) labelled CE and UDA consistency
            t_loss = t["loss"] + t_loss_mpl
        self.optimise(t_loss, self.t_opt, model=self.teacher, scheduler=self.t_sched,
                      clip=self.grad_clip)
        self.counter.value += 1
        return {"student_loss": s_loss.detach(), "teacher_loss": t_loss.detach(),
                "t_loss_l": t["loss_l"].detach(), "t_loss_uda": t["loss_u"].detach(),
                "t_loss_mpl": t_loss_mpl.detach(), "mpl_h": h,
                "mask_ratio": t["mask"].mean().detach(), "uda_weight": t["weight_u"],
                "lr_teacher": self.t_opt.param_groups[0]["lr"],
                "lr_student": self.s_opt.param_groups[0]["lr"]}


class UDA(UDAObjective):
    """UDA-only baseline: the MPL teacher's objective (labelled CE + ramped consistency) without
    feedback."""

    eval_name = "teacher"
    compiled = ("teacher",)

    def __init__(self, model: nn.Module, *, optimizer, scheduler=None, ema_decay: float = 0.0,
                 **objective):
        super().__init__(**objective)
        self.model = model
        self.opt = optimizer
        self.sched = scheduler
        self.state = {"teacher": model, "optimizer": optimizer, "step": self.counter}
        if scheduler is not None:
            self.state["scheduler"] = scheduler
        self.track_ema(model, ema_decay)

    def train_step(self, batch: SSLBatch):
        self.model.train()
        with self.autocast():
            logits = self.net("teacher")(torch.cat([batch.x_l, batch.x_uw, batch.x_us]))
            t = self.uda_loss(logits, batch.y_l)
        self.optimise(t["loss"], self.opt, model=self.model, scheduler=self.sched,
                      clip=self.grad_clip, ema=True)
        self.counter.value += 1
        return {"teacher_loss": t["loss"].detach(), "t_loss_l": t["loss_l"].detach(),
                "t_loss_uda": t["loss_u"].detach(), "mask_ratio": t["mask"].mean().detach(),
                "uda_weight": t["weight_u"],
                "lr_teacher": self.opt.param_groups[0]["lr"]}


class Supervised(SSLMethod):
    """Supervised-only baseline on the labelled images, with the same network, schedule and EMA."""

    compiled = ("model",)

    def __init__(self, model: nn.Module, *, optimizer, scheduler=None, ema_decay: float = 0.0,
                 label_smoothing: float, grad_clip: float = 0.0):
        super().__init__()
        self.model = model
        self.opt = optimizer
        self.sched = scheduler
        self.state = {"model": model, "optimizer": optimizer}
        if scheduler is not None:
            self.state["scheduler"] = scheduler
        self.track_ema(model, ema_decay)
        self.ls = label_smoothing
        self.grad_clip = grad_clip

    def train_step(self, batch: SSLBatch):
        self.model.train()
        with self.autocast():
            logits = self.net("model")(batch.x_l)
            loss = F.cross_entropy(logits.float(), batch.y_l, label_smoothing=self.ls)
        self.optimise(loss, self.opt, model=self.model, scheduler=self.sched, clip=self.grad_clip,
                      ema=True)
        return {"loss": loss.detach(),
                "acc": (logits.argmax(1) == batch.y_l).float().mean().detach(),
                "lr": self.opt.param_groups[0]["lr"]}
