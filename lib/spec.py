"""The presentation's numbers as data (SPEC.md), so tables put "presented" beside "reproduced"
without typing.

``PRESENTED`` holds the class's own results; ``REFERENCE`` holds third-party numbers the
presentation quotes (kuangliu/pytorch-cifar, the Meta Pseudo Labels paper), which are cited, never
compared as ours. Accuracies are in percent, AUCs in [0, 1], FIDs as printed.
"""
from __future__ import annotations

PRESENTED = {
    # 1.4 -- CIFAR-10 test accuracy (%)
    "accuracy": {"resnet18": 93.79, "resnet50": 94.39, "resnet101": 94.5, "drn_c_26": 89.62,
                 "drn_d_22": 89.62, "efficientnet_b0": 86.84},
    # 1.7 -- test AUC with SGD, by (batch size, learning rate)
    "batch_lr_auc": {(16, 1e-4): 0.9555, (16, 1e-3): 0.9461, (32, 1e-4): 0.9570, (32, 1e-3): 0.9521,
                     (64, 1e-4): 0.9512, (64, 1e-3): 0.9545, (128, 1e-4): 0.9302,
                     (128, 1e-3): 0.9567, (256, 1e-4): 0.9077, (256, 1e-3): 0.9579},
    # 1.7 -- the cell the slide prints in bold in each learning-rate column: {lr: batch size}
    "batch_lr_bold": {1e-4: 32, 1e-3: 256},
    # 1.5 -- the slide's remark beside the pytorch-cifar table: our ResNets are "+0.7%" better
    "resnet_margin_over_pytorch_cifar": 0.7,
    # 1.1 -- "224*224 CIFAR10 ... ACC 98% 이상" for EfficientNet: at least 98% (%), at 224 px
    "efficientnet_pretrained_accuracy": (98.0, 100.0),
    "efficientnet_pretrained_resolution": 224,
    # 1.8 -- hyperparameters (nothing else: epochs, StepLR step size and gamma, momentum and
    # weight decay are not on the slide)
    "hyperparameters": {"learning rate": 0.001, "batch size": 128, "scheduler": "StepLR",
                        "optimizer": "SGD + momentum",
                        "transforms": "RandomCrop(32, padding=4), RandomHorizontalFlip, "
                                      "Normalize((0.4914, 0.4822, 0.4465), "
                                      "(0.2023, 0.1994, 0.2010))"},
    # 1.10 -- classification report of the best model: (precision, recall, f1), support 1,000 each
    "class_report": {"airplane": (0.94, 0.95, 0.95), "automobile": (0.97, 0.97, 0.97),
                     "bird": (0.93, 0.91, 0.92), "cat": (0.89, 0.88, 0.88),
                     "deer": (0.93, 0.96, 0.94), "dog": (0.93, 0.91, 0.92),
                     "frog": (0.96, 0.96, 0.96), "horse": (0.96, 0.96, 0.96),
                     "ship": (0.97, 0.97, 0.97), "truck": (0.96, 0.96, 0.96)},
    "class_report_support": 1000,
    "class_report_accuracy": 0.94,
    # the summary rows: (precision, recall, f1); support 10,000 each
    "class_report_summary": {"macro avg": (0.94, 0.94, 0.94), "weighted avg": (0.94, 0.94, 0.94)},
    "class_report_total_support": 10000,
    # "CAT을 제외한 9개의 CLASS에서는 평균 95%의 ACC": per-class accuracy (recall) averaged over
    # the nine classes other than cat
    "all_but_cat_average": 0.95,
    # 2.4 -- FID on 5,000 generated images, with the setting that produced it
    "fid": {"dcgan": 189.13, "ddpm": 35.33},
    "fid_setting": {"dcgan": {"lr": 1e-4, "batch_size": 128, "epochs": 200},
                    "ddpm": {"lr": 2e-4, "batch_size": 128, "epochs": 50}},
    # 2.2: "60-70%" test accuracy with VAE reconstructions
    "vae_augmentation_accuracy": (60.0, 70.0),
    "fid_images": 5000,
    # 3.6 / 3.7 -- CIFAR-10-4K top-1 (%)
    "mpl": {"paper (with finetune)": 96.11, "reference code, no finetune": 96.01,
            "reference code, with finetune": 96.08, "presented 30k steps": 94.49,
            "presented 30k steps + finetune": 94.61, "presented best": 94.73,
            "presented 300k steps (stopped at 129k)": 95.03, "presented 300k best": 95.36,
            "presented 100k steps (at 39k)": 94.31},
    "ssl_split": {"validation": 5000, "labelled": 4000, "unlabelled": 41000},
    # 3.7 -- the top-5 test accuracy (%) printed in each training log on the slide
    "mpl_log_top5": {"300k steps, at step 129,000": 99.96, "100k steps, at step 39,000": 99.88,
                     "30k steps": 99.78, "30k steps + finetune": 99.69},
}

REFERENCE = {
    # 1.5 -- https://github.com/kuangliu/pytorch-cifar README, CIFAR-10 test accuracy (%)
    "pytorch_cifar": {"VGG16": 92.64, "ResNet18": 93.02, "ResNet50": 93.62, "ResNet101": 93.75,
                      "RegNetX_200MF": 94.24, "RegNetY_400MF": 94.29, "MobileNetV2": 94.43,
                      "ResNeXt29(32x4d)": 94.73, "ResNeXt29(2x64d)": 94.82, "SimpleDLA": 94.89,
                      "DenseNet121": 95.04, "PreActResNet18": 95.11, "DPN92": 95.16, "DLA": 95.47},
    # 3.1 -- Pham et al., "Meta Pseudo Labels" (CVPR 2021), Table 2: (CIFAR-10-4K top-1,
    # SVHN-1K top-1, ImageNet-10% top-1, ImageNet-10% top-5) in %, as printed; None where the paper
    # gives no number
    "ssl_methods": {
        "Temporal Ensemble": ("83.63 ± 0.63", "92.81 ± 0.27", None, None),
        "Mean Teacher": ("84.13 ± 0.28", "94.35 ± 0.47", None, None),
        "VAT + EntMin": ("86.87 ± 0.39", "94.65 ± 0.19", None, "83.39"),
        "LGA + VAT": ("87.94 ± 0.19", "93.42 ± 0.36", None, None),
        "ICT": ("92.71 ± 0.02", "96.11 ± 0.04", None, None),
        "MixMatch": ("93.76 ± 0.06", "96.73 ± 0.31", None, None),
        "ReMixMatch": ("94.86 ± 0.04", "97.17 ± 0.30", None, None),
        "EnAET": ("94.65", "97.08", None, None),
        "FixMatch": ("95.74 ± 0.05", "97.72 ± 0.38", "71.5", "89.1"),
        "UDA": ("94.53 ± 0.18", "97.11 ± 0.17", "68.07", "88.19"),
        "SimCLR": (None, None, "71.7", "90.4"),
        "MOCOv2": (None, None, "71.1", None),
        "PCL": (None, None, None, "85.6"),
        "PIRL": (None, None, None, "84.9"),
        "BYOL": (None, None, "68.8", "89.0"),
        "Meta Pseudo Labels": ("96.11 ± 0.07", "98.01 ± 0.07", "73.89", "91.38"),
        "Supervised with full data": ("94.92 ± 0.17", "97.41 ± 0.16", "76.89", "93.27"),
    },
}


def presented_numbers() -> list[dict]:
    """Every number the presentation gives, one row each, keyed so chapters can report the
    reproduced value.

    A row: ``key`` (what a chapter passes to ``Report.compare``), ``item`` (SPEC number),
    ``quantity``, ``presented`` (a number, or a ``(low, high)`` range), ``unit`` and
    ``higher_is_better``.
    """
    rows = []

    def add(key, item, quantity, presented, unit, higher=True):
        rows.append({"key": key, "item": item, "quantity": quantity, "presented": presented,
                     "unit": unit, "higher_is_better": higher})

    add("1.1/efficientnet_b0_pretrained", "1.1",
        "ImageNet-pretrained EfficientNet-B0 test accuracy at 224 px (at least 98%)",
        PRESENTED["efficientnet_pretrained_accuracy"], "%")
    for model, acc in PRESENTED["accuracy"].items():
        add(f"1.4/{model}", "1.4", f"{model} test accuracy", acc, "%")
    for (bs, lr), auc in PRESENTED["batch_lr_auc"].items():
        add(f"1.7/b{bs}/lr{lr:g}", "1.7", f"test AUC, batch {bs}, lr {lr:g}", auc, "AUC")
    for cls, values in PRESENTED["class_report"].items():
        for name, v in zip(("precision", "recall", "f1"), values):
            add(f"1.10/{cls}/{name}", "1.10", f"{cls} {name}", v, "")
    add("1.10/accuracy", "1.10", "best model accuracy (classification report)",
        PRESENTED["class_report_accuracy"], "")
    for avg, values in PRESENTED["class_report_summary"].items():
        for name, v in zip(("precision", "recall", "f1"), values):
            add(f"1.10/{avg.replace(' ', '_')}/{name}", "1.10", f"{avg} {name}", v, "")
    add("1.10/all_but_cat", "1.10", "mean accuracy (recall) of the 9 classes other than cat",
        PRESENTED["all_but_cat_average"], "")
    add("2.2/vae_reconstructions", "2.2",
        "test accuracy of a classifier trained on VAE reconstructions",
        PRESENTED["vae_augmentation_accuracy"], "%")
    for model, fid in PRESENTED["fid"].items():
        add(f"2.4/{model}", "2.4", f"{model.upper()} FID (5,000 samples)", fid, "FID", higher=False)
    mpl = PRESENTED["mpl"]
    add("3.6/mpl", "3.6", "MPL top-1, 30k steps, no finetune", mpl["presented 30k steps"], "%")
    add("3.6/mpl_finetune", "3.6", "MPL top-1, 30k steps + finetune",
        mpl["presented 30k steps + finetune"], "%")
    add("3.7/mpl_best", "3.7", "MPL best top-1 during training", mpl["presented best"], "%")
    return rows


# |difference| within this counts as reproduced (FID: relative)
TOLERANCE = {"%": 0.5, "AUC": 0.005, "": 0.01, "FID": 0.05}


def status(presented, reproduced, *, unit: str, higher_is_better: bool) -> str:
    """``reproduced`` (within tolerance or inside a presented range), ``better``, ``worse`` or
    ``not run``."""
    if reproduced is None or reproduced != reproduced:  # None or NaN
        return "not run in this profile"
    if isinstance(presented, (tuple, list)):
        lo, hi = presented
        if lo <= reproduced <= hi:
            return "reproduced"
        return "better" if (reproduced > hi) == higher_is_better else "worse"
    tol = TOLERANCE.get(unit, 0.01) * (abs(presented) if unit == "FID" else 1)
    # a difference equal to the tolerance counts, whatever the float rounding of the subtraction
    if abs(reproduced - presented) <= tol * (1 + 1e-9):
        return "reproduced"
    return "better" if (reproduced > presented) == higher_is_better else "worse"
