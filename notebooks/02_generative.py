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
# # 2. Generative models on CIFAR-10: VAE, DCGAN and DDPM scored by FID
#
# Reproduces chapter 2 of the class presentation: a (class-conditional) VAE, DCGAN and DDPM trained on the
# CIFAR-10 training split through the report's one training loop, the VAE-as-augmentation experiment, and the
# Fréchet Inception Distance of each model's samples beside the presented values and beside the FID of real
# images (the floor). **FID depends strongly on the number of images scored: the smoke and quick profiles use
# tens to hundreds of images, so their FIDs are far higher than, and not comparable with, the presented
# 5,000-sample values.** Only the full profile scores 5,000 images per model.

# %%
# Google Colab only (outside Colab this cell does nothing): fetch the project if lib/ is not beside this
# notebook, install the packages Colab lacks (never torch), keep outputs on Google Drive so a
# disconnected session resumes, and say which profile this GPU gets. REPO_URL is the repository to
# fetch: point it at your copy.
REPO_URL = "https://github.com/your-org/cifar10-report.git"
KEEP_ON_DRIVE = True
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess
    from pathlib import Path

    if not any((p / "lib" / "params.py").is_file() for p in (Path.cwd(), *Path.cwd().parents)):
        target = os.environ.get("COLAB_REPO_DIR", "/content/cifar10-report")
        subprocess.run(["git", "clone", "--depth", "1", REPO_URL, target], check=True)
        os.chdir(Path(target) / "notebooks")
    sys.path.insert(0, str(next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "lib" / "params.py").is_file())))
    from lib.colab import gpu_profile, setup_colab

    print(setup_colab(keep_on_drive=KEEP_ON_DRIVE))
    print(gpu_profile())  # the profile `auto` gives this GPU, and how long it is projected to take

# %% tags=["parameters"]
profile = "auto"   # smoke | quick | colab | full | full-long | auto (GPU: largest within 4 h; CPU: quick)
data = "auto"      # auto ($CIFAR10_ROOT, else torchvision download) | torchvision | path to a folder or archive
out_dir = ""       # where outputs/<profile>/ goes; "" = the repository's outputs/

# %%
import sys
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "lib" / "params.py").is_file())
sys.path.insert(0, str(ROOT))

from IPython.display import Markdown, display

from lib import params as P, report as R
from lib.chapters import generative, generative_select, supervised
from lib.evaluate import fid
from lib.report import figures
from lib.spec import PRESENTED
from lib.train import pick_device

params = P.load("02_generative", profile, {"data": data} if data != "auto" else None)
splits = supervised.load_splits(params)
device = pick_device(params["device"])
report = R.Report("02_generative", params, out_root=out_dir or None, data_source=splits.source)
fid_ok, fid_message = fid.inception_status(download=params["fid_download"],
                                          timeout_s=params["fid_download_timeout_s"])
display(Markdown(report.describe(f"split sizes {splits.sizes()}") + f" FID: {params['fid_images']:,} generated images "
                 f"per model against {params['fid_reference_images'] or 50000:,} training images. {fid_message}"))

# %% [markdown]
# ## 2.1 The three models
#
# * **VAE** (Kingma & Welling 2013). An encoder maps an image to a Gaussian q(z|x), a decoder maps a latent z
#   back to an image; training maximises the evidence lower bound (reconstruction + KL to N(0, I)). Ours is
#   class-conditional: the label enters encoder and decoder, so the class of a sample can be fixed.
# * **DCGAN** (Radford et al. 2015). A generator G (transposed convolutions, batch norm, ReLU, tanh output)
#   turns noise into images; a discriminator D (strided convolutions, LeakyReLU 0.2, batch norm) tells real
#   from fake. Training, four steps per batch: **(1)** sample noise z and generate G(z); **(2)** update D to
#   output 1 on real and 0 on generated images; **(3)** update G so that D outputs 1 on G(z); **(4)** repeat.
#   *Mode collapse*: G can win by producing a few convincing images regardless of z — the class histogram in
#   2.4 shows how evenly each model covers the ten classes.
# * **DDPM** (Ho et al. 2020). A fixed forward process adds Gaussian noise over T = 1000 steps,
#   q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I); a U-Net learns to predict the noise, and sampling runs the learned
#   denoising backwards from pure noise (1000 network evaluations; DDIM needs far fewer).
#
# The slide's comparison table (characteristics, pros, cons), in its words, is the table below.
#
# Below, each model trains through the report's single loop (`lib.train.fit`): the VAE and DDPM return their own
# loss; the DCGAN step owns both optimisers. Checkpoints resume an interrupted run.

# %%
ckpt_root = report.work_dir("checkpoints")
tb_root = report.work_dir("tensorboard")
trained = {kind: generative.train_generator(kind, splits, params, ckpt_root=ckpt_root, tb_root=tb_root) for kind in generative.GENERATORS}
report.text("2.1", "Model descriptions and the four GAN training steps (markdown above)")
display(report.table(generative.comparison_table(), "comparison", item="2.1",
                     title="VAE, DCGAN and DDPM: the slide's characteristics, pros and cons"))
report.table(generative.models_table(trained), "settings", item="2.4",
             title="Each model as trained here, beside the slide's lr / batch / epochs")

# %% [markdown]
# ## 2.2 VAE reconstructions as augmentation
# Presented: a classifier trained with label-preserving VAE reconstructions reaches only **60–70%**, so the VAE
# adds nothing as augmentation. Here the chapter-1 classifier (ResNet-18 by default) is trained on (a) the real
# training images, (b) their VAE reconstructions with the same labels, (c) both; each is selected on real
# validation images and tested once on real test images.

# %%
aug_table, aug_runs = generative.augmentation_experiment(trained["vae"].method, splits, params,
                                                         ckpt_root=ckpt_root, tb_root=tb_root)
for run in aug_runs.values():  # each test image's prediction, for the intervals
    report.predictions(run.name, run.test_logits, run.test_labels, item="2.2", run=supervised.run_id(run))
report.compare("2.2/vae_reconstructions", 100 * aug_runs["VAE reconstructions"].test_acc,
               interval=supervised.accuracy_interval(aug_runs["VAE reconstructions"]),
               note=f"{params['classifier_model']}, {aug_runs['VAE reconstructions'].epochs} epochs")
report.table(aug_table, "vae_augmentation", item="2.2", title="Test accuracy with VAE reconstructions as training data")

# %%
shown_x, shown_y = splits.train_x[:32], splits.train_y[:32]
recon = trained["vae"].method.reconstruct(shown_x, shown_y)
fig = figures.sample_grid({"real training images": shown_x, "VAE reconstructions (same labels)": recon}, nrow=8)
report.figure(fig, "vae_reconstructions", item="2.2", title="Training images and their VAE reconstructions");

# %% [markdown]
# ## 2.3 Fréchet Inception Distance
# d² = ‖m − m_w‖² + Tr(C + C_w − 2 (C C_w)^½), where (m, C) and (m_w, C_w) are the mean and covariance of
# Inception-v3 features of generated and of real images (Inception pretrained on ImageNet). The presentation
# says "1024-dimensional" features, but pytorch-fid offers 64, 192, 768 and **2048** dimensions, and the
# standard (used by every published CIFAR-10 FID) is the 2048-d pool3 layer: we use 2048. Images are fed from
# memory in batches (no PNG files), through pytorch-fid's own network and distance; the training-set reference
# statistics are computed once and cached. FID is biased upwards when few images are scored, so the table also
# shows the **floor**: real training images and real test images, scored the same way with the same count.

# %%
report.text("2.3", "FID definition; 2048-d pool3 features (pytorch-fid) instead of the presented '1024-d'")

# %% [markdown]
# ## 2.4 Samples, FID and diversity
# Presented: **DCGAN FID 189.13** (lr 1e-4, batch 128, 200 epochs); **DDPM FID 35.33** (lr 2e-4, batch 128,
# 50 epochs), on 5,000 generated images; DDPM's samples are more diverse, cleaner and sharper, DCGAN generates
# faster. Each model draws `fid_images` samples (DDPM with DDIM, `ddpm_ddim_steps` steps spaced as
# `ddpm_ddim_spacing` says), plus `ddpm_ancestral_images` with the 1000-step ancestral sampler, which is there to
# time it against DDIM: below `fid_images` it is a timing sample, not FID-scored. Every sampler is timed. The full
# profile trains DDPM for 150 epochs, not the presented 50, aiming at FID <= 20. The settings table (section
# 2.1's cell) and the FID table put the slide's lr, batch size and epochs per model beside ours.
#
# **Which DCGAN samples**: a GAN's FID swings from epoch to epoch, so the DCGAN saved `dcgan_snapshots` generator
# snapshots evenly spaced over training (the last epoch included). Each is scored by FID against the
# **training-set** reference statistics (never the test set), on samples drawn with another seed than the
# samples reported below, and the lowest one draws the chapter's DCGAN samples.

# %%
if fid_ok:
    real_stats = generative.real_statistics(params, device=device)
    snapshots = generative_select.choose_snapshot(trained["dcgan"], real_stats["reference"], params,
                                                  device=device)
    display(report.table(snapshots, "dcgan_snapshots", item="2.4",
                         title=f"DCGAN snapshots: FID on training statistics ({params['fid_images']:,} images each)"))
else:
    report.skip("2.4", f"DCGAN snapshots not scored, the last epoch samples: {fid_message}")

# %%
samples = generative.draw_samples(trained, params)
fig = figures.sample_grid({s.label: s.images for s in samples.values()}, nrow=8,
                    title=f"profile {params['profile']}: samples of each model")
report.figure(fig, "sample_grids", item="2.4", title="Sample grids of each model");
display(report.table(generative.sampling_times(samples, fid_images=params["fid_images"]), "sampling_times", item="2.4",
                     title=f"Sampling time per image on {report.device}"))
report.per_example("sampling_repeats", item="2.4", **generative.time_samplers(trained, params))

# %%
if fid_ok:
    scored = generative.score_samples(samples, params, device=device)
    fid_scores = generative.fid_table(samples, trained, real_stats, params, scored=scored, device=device)
    display(report.table(fid_scores, "fid", item="2.4", title=f"FID ({params['fid_images']:,} images; profile {params['profile']})",
                         notes=f"Smoke/quick FIDs use far fewer than {PRESENTED['fid_images']:,} images and are not "
                               "comparable with the presented values."))
    report.per_example("fid_replicates", item="2.4",
                       **generative.fid_replicates(scored, fid_scores, samples, real_stats, params, device=device))
    fid_intervals = generative.fid_intervals(report.load_per_example("fid_replicates"))
    for model, (value, sampler, label) in generative.compared_fids(fid_scores, samples).items():
        report.compare(f"2.4/{model}", value, interval=fid_intervals[label],
                       note=f"{sampler}, {params['fid_images']:,} images")
else:
    print(fid_message)
    report.skip("2.4", f"FID table not computed: {fid_message}")

# %% [markdown]
# **DDIM timestep spacing**: the same EMA checkpoint sampled with DDIM whose timesteps are spaced "leading"
# (0, 10, ..., 990 at 100 steps: the DDIM paper's uniform skip, diffusers' default) or "trailing" (999, ..., 9:
# Lin et al. 2023, *Common Diffusion Noise Schedules and Sample Steps are Flawed*, better at few steps), at the
# step counts of `ddpm_ddim_compare`; each scored with `fid_images` images against the same reference. The first
# row is the FID table's DDPM row.

# %%
if fid_ok:
    ddim = generative_select.ddim_comparison(trained["ddpm"], samples, fid_scores, real_stats["reference"],
                                             params, device=device)
    display(report.table(ddim, "ddim_spacing", item="2.4",
                         title=f"DDPM with DDIM: leading vs trailing spacing ({params['fid_images']:,} images each)"))

# %% [markdown]
# **Memorisation check**: each sample beside its three nearest training images (pixel L2 distance). A sample
# that is a near-copy of a training image (distance ≈ 0) would mean the model memorised rather than generated.

# %%
train_pool = splits.train_x[: params["neighbour_train_images"] or None]
fig = figures.neighbours_figure({s.label: s.images for s in samples.values()}, train_pool, per_model=3, k=3)
report.figure(fig, "nearest_neighbours", item="2.4", title=f"Nearest training images of samples ({len(train_pool):,} searched)");

# %% [markdown]
# **Diversity / mode collapse**: the share of each class among the samples, as predicted by the chapter-1
# classifier (falling back to the 2.2 classifier trained here when chapter 1 has not run in this profile).
# A model covering CIFAR-10 evenly is near 10% everywhere; mode collapse shows as a few dominant classes.

# %%
classifier, classifier_note = generative.histogram_classifier(report.profile_dir, aug_runs["real images"])
counts = generative.sample_class_counts(classifier, samples, trained, real=splits.test_x, n=params["histogram_images"],
                               seed=params["seed"] + 1)
display(Markdown(f"Classifier: {classifier_note}. Shares over up to {params['histogram_images']:,} images per row "
                 "(DDPM rows use their FID samples, to avoid another round of slow sampling)."))
report.figure(figures.histogram_figure(counts, title="Predicted class of samples"), "class_histogram", item="2.4",
              title="Class histogram of samples under the classifier");

# %%
report.finish();
