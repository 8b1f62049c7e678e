# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Supervised learning on CIFAR-10
#
# Reproduces chapter 1 of the class presentation: ResNet, DRN and EfficientNet classifiers, their accuracy
# beside the presented numbers, training curves, the batch-size x learning-rate study, the confusion matrix,
# the classification report and class activation maps. Models are selected on a validation split carved from
# the training set; the test set is reported once, at the end.

# %% tags=["parameters"]
profile = "auto"   # smoke | quick | full | auto (full on a GPU, otherwise quick)
data = "auto"      # auto ($CIFAR10_ROOT, else torchvision download) | torchvision | path to a folder or archive
out_dir = ""       # where outputs/<profile>/ goes; "" = the repository's outputs/

# %%
import sys
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "lib").is_dir())
sys.path.insert(0, str(ROOT))

import pandas as pd
from IPython.display import Markdown, display

from lib import params as P, plots, report as R, supervised as S
from lib.spec import PRESENTED, REFERENCE
from lib.train import device_description, pick_device

params = P.load("01_supervised", profile, {"data": data} if data != "auto" else None)
splits = S.load_splits(params)
report = R.Report("01_supervised", params, out_root=out_dir or None, data_source=splits.source,
                  device=device_description(pick_device(params["device"])))
display(Markdown(f"**Profile `{params['profile']}`** on {report.device}; data: {splits.source}; "
                 f"split sizes {splits.sizes()}."))

# %% [markdown]
# ## 1.4 Accuracy table — presented vs reproduced
# Presented: ResNet18 93.79%, ResNet50 94.39%, ResNet101 94.5%, DRN-C-26 89.62%, DRN-D-22 89.62%,
# EfficientNet-B0 86.84% (CIFAR-10 test). Each model below is trained with the `recipe` of the params file,
# its best epoch chosen on validation accuracy, and evaluated once on the test set.

# %%
ckpt_root = report.work_dir("checkpoints")
tb_root = report.work_dir("tensorboard")
results = [S.train_classifier(name, splits, params, ckpt_root=ckpt_root, tb_root=tb_root) for name in params["models"]]
report.table(S.accuracy_table(results, PRESENTED["accuracy"], profile=params["profile"], source=splits.source,
                              n_test=len(splits.test_y)),
             "accuracy", item="1.4", title="CIFAR-10 test accuracy, presented vs reproduced")

# %% [markdown]
# ## 1.5 Reference table (kuangliu/pytorch-cifar)
# Third-party numbers the presentation quotes, from the public pytorch-cifar repository's README; not ours.

# %%
report.table(pd.DataFrame({"model": list(REFERENCE["pytorch_cifar"]),
                           "test acc (%), pytorch-cifar README": list(REFERENCE["pytorch_cifar"].values())}),
             "reference_pytorch_cifar", item="1.5", title="Reference: kuangliu/pytorch-cifar (cited, not run here)")

# %% [markdown]
# ## 1.6 Training and validation accuracy per epoch
# The presentation plots test accuracy per epoch; selecting on the test set would leak it, so panel (b) shows
# validation accuracy and the test set is evaluated once, above.

# %%
fig = plots.training_curves({r.name: r.history for r in results},
                            title=f"profile {params['profile']}, {len(splits.train_y):,} training images")
report.figure(fig, "training_curves", item="1.6", title="Training and validation accuracy per epoch");

# %% [markdown]
# ## 1.8 Hyperparameters — presented vs as run

# %%
report.table(S.hyperparameter_table(results[0].recipe, PRESENTED["hyperparameters"], recipe_name=params["recipe"],
                                    epochs=params["epochs"]),
             "hyperparameters", item="1.8", title="Hyperparameters, presented vs this run")

# %%
report.finish();
