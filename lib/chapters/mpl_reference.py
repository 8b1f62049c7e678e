"""Chapter 3 beside its references: every setting of the presented run's code
(kekmodel/MPL-pytorch at 7dc6297, its README command and the code behind it), where that code sets
it, and :func:`reference_recipe_table`, this run's value beside each with why they differ; the MPL
paper's SSL-methods table (:func:`reference_table`, SPEC 3.1) and the slide's remark on it
(:func:`ssl_remark_check`)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import params as P
from ..spec import PRESENTED
from ..storage import ROOT
from .semi_supervised import steps_of

# The reference run (kekmodel/MPL-pytorch at 7dc6297: its README command for CIFAR-10-4K and the
# code it runs): param -> (the reference's value, where it is set)
REFERENCE_RECIPE = {
    "total_steps": (300000, "README command --total-steps"),
    "eval_every": (1000, "README command --eval-step"),
    "batch_size": (128, "README command --batch-size"),
    "mu": (7, "README command --mu"),
    "teacher_lr": (0.05, "README command --teacher_lr"),
    "student_lr": (0.05, "README command --student_lr"),
    "momentum": (0.9, "main.py --momentum default"),
    "nesterov": (True, "README command --nesterov"),
    "weight_decay": (0.0005, "README command --weight-decay"),
    "weight_decay_exclude": ("bn", "main.py no_decay = ['bn'] (names containing 'bn')"),
    "warmup_steps": (5000, "README command --warmup-steps"),
    "student_wait_steps": (3000, "README command --student-wait-steps"),
    "label_smoothing": (0.15, "README command --label-smoothing"),
    "uda_steps": (5000, "README command --uda-steps"),
    "lambda_u": (8.0, "README command --lambda-u"),
    "threshold": (0.6, "README command --threshold"),
    "temperature": (0.7, "README command --temperature"),
    "ema": (0.995, "README command --ema (EMA of the student, evaluated)"),
    "grad_clip": (1e9, "main.py --grad-clip default (no clipping in effect)"),
    "mpl_feedback": ("reference", "main.py: dot_product = s_loss_l_new - s_loss_l_old"),
    "width": (1.0, "models.py WideResNet(depth 28, widen 2)"),
    "block_style": ("mpl-pytorch", "models.py BasicBlock"),
    "block_dropout": (0.0, "main.py WideResNet(dropout=0)"),
    "teacher_dropout": (0.2, "README --teacher-dropout -> dense_dropout before fc"),
    "student_dropout": (0.2, "README --student-dropout -> dense_dropout before fc"),
    "bn_momentum": (0.001, "models.py nn.BatchNorm2d(momentum=0.001)"),
    "randaug_ops": (2, "README command --randaug 2 16"),
    "randaug_magnitude": (16, "README command --randaug 2 16 (0-10 scale, PARAMETER_MAX 10)"),
    "cutout_size": (12, "augmentation.py RandAugmentCIFAR: CutoutConst(m, 32 // 4) = 12 px"),
    "fill": (128, "data.py RandomCrop(fill=128), augmentation.py FILL_COLOR"),
    "normalization": ("mpl-pytorch", "data.py cifar10_mean / cifar10_std"),
    "unlabelled_size": ("all 50,000", "data.py x_u_split: every training image, labelled too"),
    "val_size": (0, "none: the reference selects its best step on the test set"),
    "finetune_epochs": (625, "README command --finetune-epochs"),
    "finetune_batch_size": (512, "README command --finetune-batch-size"),
    "finetune_lr": (3e-5, "README command --finetune-lr"),
    "finetune_momentum": (0.9, "README command --finetune-momentum"),
    "finetune_weight_decay": (0.0, "README command --finetune-weight-decay"),
    "finetune_label_smoothing": (0.15, "main.py finetune(): the label-smoothed criterion"),
    "finetune_dense_dropout": (0.0, "main.py finetune(): model.drop = nn.Identity()"),
    "finetune_randaugment": (True, "data.py transform_finetune: crop, flip, RandAugmentCIFAR"),
    "finetune_shuffle": (False, "main.py finetune(): DataLoader without a sampler"),
    "finetune_drop_last": (False, "main.py finetune(): DataLoader default"),
    "amp": ("fp16", "README command --amp (fp16 autocast with gradient scalers)"),
    "seed": (2, "README command --seed"),
}


def why_different(full: dict, presented: dict = PRESENTED) -> dict[str, str]:
    """Why the ``full`` profile differs from the reference run where it does."""
    ours = presented["mpl_hyperparameters"]["common", "training steps"]
    theirs = REFERENCE_RECIPE["total_steps"][0]
    mpl, long = presented["mpl"], P.load("03_semi_supervised", "full-long")
    return {
        "total_steps": (f"MPL: {steps_of('mpl', full):,} in the full profile, where a log-linear "
                        f"fit of {mpl['presented 30k steps']}% at {ours:,} and "
                        f"{mpl['reference code, no finetune']}% at {theirs:,} reaches 95.0%; "
                        f"UDA and supervised: the presentation's {ours:,} (SPEC 3.5); profile "
                        f"full-long runs {steps_of('mpl', long):,}"),
        "grad_clip": "0 = no clipping, the same in effect",
        "unlabelled_size": ("the presentation's split (SPEC 3.4): "
                            f"{presented['ssl_split']['validation']:,} validation and the labelled "
                            "images held out"),
        "val_size": "model selection on a validation split; the test set is evaluated once",
        "seed": "one seed for the whole report",
    }


# bench/mpl_precision.py's committed record: MPL's feedback h under bf16 and fp16 against fp32
PRECISION_RECORD = ROOT / "bench" / "records" / "benches" / "mpl_precision.json"


def feedback_precision_note(record: Path = PRECISION_RECORD) -> str:
    """Why chapter 3 trains in fp16, from the record of ``bench/mpl_precision.py``: how often the
    sign of MPL's feedback ``h`` under bf16 and fp16 autocast agrees with fp32 on the same weights
    and batches, its mean absolute error, and how often that error reaches ``|h|`` (no pipe
    characters: tables render as markdown)."""
    if not record.is_file():
        return ("not measured: python bench/mpl_precision.py --data ARCHIVE, then python "
                "scripts/readme.py record outputs/bench/mpl_precision.json")
    rec = json.loads(record.read_text())
    rows = {(r["precision"], r["way"]): r for r in rec["rows"]}
    parts = []
    for name in ("bf16", "fp16"):
        r = rows.get((name, "student step")) or rows[name, "logits only"]
        parts.append(f"{name} {r['sign_agreement']:.1%} of {r['steps']} steps, mean absolute "
                     f"error {r['mae_h']:.1e}, error >= abs(h) on {r['error_reaches_h']:.1%}")
    mean_h = rows["bf16", "logits only"]["mean_abs_h"]
    return (f"sign of MPL's feedback h as in fp32: {'; '.join(parts)} (mean abs(h) {mean_h:.1e}; "
            f"{rec['steps']} steps of the {rec['profile']} WRN, {rec['batch']}, CPU autocast: "
            f"`{rec['command']}`)")


# evidence shown beside a setting whatever its value
NOTES = {"amp": feedback_precision_note}


def reference_recipe_table(params: dict) -> pd.DataFrame:
    """Every setting of the reference run beside this run's, with the reference's source, why
    they differ where they do (a value set by a small profile says so) and, in ``notes``, the
    measurement behind a choice."""
    full = P.load("03_semi_supervised", "full")
    why_full = why_different(full)
    rows = []
    def value(p, key):  # MPL's own steps where they differ from total_steps
        return steps_of("mpl", p) if key == "total_steps" else p[key]

    for key, (ref, source) in REFERENCE_RECIPE.items():
        ours = value(params, key)
        same = ours == ref
        why = "" if same else (
            f"set by the {params['profile']} profile (params/03_semi_supervised.yaml says why)"
            if ours != value(full, key) else why_full.get(key, ""))
        rows.append({"param": key, "this run": ours, "reference code": ref, "same": same,
                     "reference source (kekmodel/MPL-pytorch)": source, "why different": why,
                     "notes": NOTES[key]() if key in NOTES else ""})
    epoch = REFERENCE_RECIPE["eval_every"][0] * REFERENCE_RECIPE["batch_size"][0]  # --expand-labels
    rows.append({"param": "labelled sampling", "this run": "reshuffled every epoch",
                 "reference code": ("--expand-labels: the "
                                    f"{PRESENTED['ssl_split']['labelled']:,} repeated to "
                                    f"{epoch:,} per epoch"),
                 "same": False, "reference source (kekmodel/MPL-pytorch)": "data.py x_u_split",
                 "why different": "the same sampling up to where epochs end", "notes": ""})
    return pd.DataFrame(rows + distributed_rows(params))


def distributed_rows(params: dict) -> list[dict]:
    """How MPL trains on several GPUs here (``data_parallel``, ``sync_batchnorm``,
    ``mpl_distributed_feedback``: :mod:`lib.train.distributed`) beside the reference code's
    distributed mode (main.py launched with ``--local_rank``, NCCL), one row per part of the step."""
    source = "reference source (kekmodel/MPL-pytorch)"
    parallel = "mpl" in (params.get("data_parallel") or ())
    sync, per_rank = params["sync_batchnorm"], params["mpl_distributed_feedback"] == "rank"
    single = "the single-process step, so a run resumes on any number of GPUs"
    rows = [
        ("MPL on several GPUs",
         "data-parallel over every rank of a multi-GPU launch" if parallel
         else "one process (data_parallel does not list mpl)",
         "one process (the README command); data-parallel over every process when launched with "
         "--local_rank", not parallel, "README command; main.py --local_rank, init_process_group",
         "" if not parallel else "data_parallel lists mpl: its long run uses every GPU, each "
                                 "step the single-process one (rows below)"),
        ("several GPUs: global batch",
         "the single-process batch, each rank a contiguous slice",
         "batch_size images per process: the global batch grows with the GPUs", False,
         "main.py DistributedSampler, batch_size=args.batch_size", f"keeps {single}"),
        ("several GPUs: gradients",
         "teacher's and student's averaged over the ranks: one all-reduce after each backward "
         "(a DistributedDataParallel wrapper does not compile as one graph)",
         "teacher's and student's averaged over the processes by DistributedDataParallel", True,
         "main.py DistributedDataParallel(find_unused_parameters=True)", ""),
        ("several GPUs: feedback h",
         "each rank's own slice (not reduced)" if per_rank
         else "the global batch's: labelled losses averaged over the ranks",
         "each process's own dot_product, not reduced; DDP averages the teacher gradients it "
         "scales", per_rank, "main.py dot_product = s_loss_l_new - s_loss_l_old",
         "" if per_rank else f"keeps {single} (tests/test_distributed.py); "
                             "mpl_distributed_feedback: rank is the reference's"),
        ("several GPUs: UDA mask",
         "per image in the loss; the logged mask ratio averaged over the ranks",
         "per image in the loss; the logged mask ratio averaged over the processes", True,
         "main.py mask = reduce_tensor(mask, world_size), after the step", ""),
        ("several GPUs: logged losses", "averaged over the ranks", "averaged over the processes",
         True, "main.py reduce_tensor(s_loss, t_loss, t_loss_l, t_loss_u, t_loss_mpl)", ""),
        ("several GPUs: BatchNorm",
         "synchronised: statistics of the global batch" if sync
         else "per rank: statistics of its slice",
         "per process: statistics of its own batch (rank 0's running statistics broadcast at "
         "every forward)", not sync, "models.py nn.BatchNorm2d, no SyncBatchNorm",
         "" if not sync else f"keeps {single}; sync_batchnorm: false is the reference's"),
        ("several GPUs: seeds",
         "every rank seeded alike: dropout masks repeat across ranks",
         "every process seeded alike: dropout masks repeat across processes", True,
         "main.py set_seed(args)", ""),
    ]
    return [{"param": p, "this run": ours, "reference code": ref, "same": same, source: src,
             "why different": why, "notes": ""} for p, ours, ref, same, src, why in rows]


def reference_table(reference: dict, groups: dict | None = None) -> pd.DataFrame:
    """SPEC 3.1: the SSL methods table of the MPL paper (cited, not run here), in the slide's row
    groups."""
    cols = ("CIFAR-10-4K top-1", "SVHN-1K top-1", "ImageNet-10% top-1", "ImageNet-10% top-5")
    group_of = {m: g for g, members in (groups or {}).items() for m in members}
    return pd.DataFrame([{"group": group_of.get(m, ""), "method": m, **dict(zip(cols, vals))}
                         for m, vals in reference.items()])


def mean_of(printed: str | None) -> float | None:
    """``"96.11 ± 0.07"`` -> 96.11 (the mean of a printed mean ± std)."""
    return None if printed is None else float(printed.split("±")[0])


def ssl_remark_check(table: pd.DataFrame) -> pd.DataFrame:
    """The slide's remark under 3.1 ("MPL even exceeds ... supervised learning on full dataset"),
    checked on the table's CIFAR-10-4K column."""
    col = table.set_index("method")["CIFAR-10-4K top-1"]
    mpl, full = (mean_of(col["Meta Pseudo Labels"]),
                 mean_of(col[next(m for m in col.index if m.startswith("Supervised"))]))
    return pd.DataFrame([{"claim": "MPL (CIFAR-10-4K) exceeds supervised learning on the full "
                                   "dataset", "MPL": mpl, "supervised, full data": full,
                          "difference (pp)": round(mpl - full, 2), "holds": mpl > full}])
