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
# # 4. Extras: similarity search with learned features
#
# Reproduces chapter 4 of the class presentation: images are compared by the features chapter 1's ResNet-18
# learned (the global-average-pooled output of its last convolutional stage, just before the classifier).
# The gallery is the CIFAR-10 training set, the queries are test images or any image file. We compare cosine
# similarity with Euclidean distance, measure retrieval quality over the whole gallery (precision@k and mAP,
# relevant = same class) against a raw-pixel baseline, and query with a picture of a plane.
#
# Chapter 1 of the same profile must have run first (its checkpoint is the feature extractor).

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
query_image = ""   # your own image file (PNG/JPEG, any size) for 4.2; "" = the shipped assets/plane.png

# %%
import sys
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "lib" / "params.py").is_file())
sys.path.insert(0, str(ROOT))

from IPython.display import Markdown, display

from lib import params as P, report as R
from lib.chapters import extras
from lib.evaluate import retrieval
from lib.report import figures
from lib.train import pick_device

overrides = {k: v for k, v in {"data": data, "query_image": query_image}.items() if v not in ("auto", "")}
params = P.load("04_extras", profile, overrides)
cifar = extras.load_gallery(params)
gallery_x, gallery_y, query_x, query_y = cifar.gallery_x, cifar.gallery_y, cifar.query_x, cifar.query_y
device = pick_device(params["device"])
report = R.Report("04_extras", params, out_root=out_dir or None, data_source=cifar.source)
context = {"profile": params["profile"], "data": cifar.source, "device": report.device}

# %% [markdown]
# ## Embeddings
# Chapter 1's best checkpoint (chosen on validation) embeds every gallery and query image once; the features
# are cached under `outputs/<profile>/cache/04_extras/`, keyed by the checkpoint file and the exact images, so
# a re-run only scores. If chapter 1 has not run, this cell says which command to run.

# %%
embedder = extras.load_embedder(report.profile_dir, params["model"], device=device)
cache = report.work_dir("cache")
gallery_f, gallery_cached = embedder.cached(gallery_x, name="gallery", source=cifar.source, cache_dir=cache,
                                            batch_size=params["eval_batch_size"])
query_f, query_cached = embedder.cached(query_x, name="queries", source=cifar.source, cache_dir=cache,
                                        batch_size=params["eval_batch_size"])
display(Markdown(report.describe(extras.describe_embeddings(embedder, cifar, gallery_cached=gallery_cached,
                                                            query_cached=query_cached))))

# %% [markdown]
# ## 4.1 Cosine vs Euclidean
# Presented: cosine similarity compares only the direction of two feature vectors; Euclidean (L2) distance
# also compares their length and reacts to small differences. With three vectors X, Y, Z and similarity to
# Y: by cosine X is closer to Y than Z is (X > Z); by Euclidean distance Z is closer (X < Z).
#
# Here X, Y and Z are real features: Y is a test image, X its nearest training image by cosine, Z its nearest
# by Euclidean distance, for a query where the two differ. The arrows keep every vector's length and its
# angle to Y exactly, so the dashed lines have the true distances.

# %%
xyz = extras.xyz_example(query_f, gallery_f, query_labels=query_y, gallery_labels=gallery_y)
xyz_labels = (gallery_y[xyz.x], query_y[xyz.y], gallery_y[xyz.z])
report.table(extras.xyz_table(xyz, xyz_labels), "xyz_vectors", item="4.1",
             title="X, Y, Z: three real feature vectors on which cosine and Euclidean disagree")

# %%
fig = extras.xyz_figure(xyz, (gallery_x[xyz.x], query_x[xyz.y], gallery_x[xyz.z]), xyz_labels)
report.figure(fig, "xyz_cosine_vs_euclidean", item="4.1", title="Cosine vs Euclidean on real feature vectors");

# %% [markdown]
# ### A real query whose top-5 differs between the metrics
# Neighbours titled in green share the query's class, red ones do not. The scores are cosine similarity
# (higher is closer) and Euclidean distance (lower is closer).

# %%
example = params["example_query"] if params["example_query"] >= 0 else retrieval.first_disagreement(query_f, gallery_f, k=5)
fig = figures.show_similar_images(query_x[example], retrieval.neighbours(query_f[example], gallery_f, k=params["top_k"]),
                             gallery_x, gallery_y, query_label=int(query_y[example]),
                             query_title=f"test #{example}")
report.figure(fig, "top5_differs", item="4.1", title=f"Test image #{example}: nearest neighbours by each metric");

# %% [markdown]
# ### On L2-normalised features the two rankings coincide
# For unit vectors $\|a-b\|^2 = 2 - 2\cos(a, b)$, so Euclidean distance ranks exactly as cosine similarity
# does. The table checks it on every query: Euclidean on the raw features often orders the top-10 differently;
# on normalised features the identity holds to float32 rounding, and the rare orders that still differ swap two
# neighbours whose cosines tie to within float32 precision (last column, computed in float64).

# %%
agreement = {}
display(report.table(retrieval.normalised_agreement(query_f, gallery_f, k=10, per_query=agreement).assign(**context),
                     "normalised_agreement", item="4.1",
                     title="Cosine vs Euclidean rankings, raw and L2-normalised features"))
report.per_example("normalised_agreement", item="4.1", **agreement)

# %% [markdown]
# ### Retrieval quality over the whole gallery
# Not in the presentation, which shows examples only: every query ranks all gallery images, and a neighbour
# counts as relevant when it has the query's class. precision@k is the share of relevant images in the top k;
# mAP averages the precision at the rank of every relevant image (all 5,000 of its class in the full gallery).
# The baseline ranks raw pixels (3,072 values in [0, 1]) the same way; where `baseline_query_subset` limits it to
# a class-balanced subset of queries (3,072-d is slow on a CPU), the learned features are also scored on that
# subset. Times are per query, on the device above, with cached features: the top-10 search, and the full
# ranking the metrics need.

# %%
spaces = extras.comparison_spaces(f"{params['model']} features", query_f, query_y, gallery_f, query_x, gallery_x,
                              baseline_queries=params["baseline_query_subset"], seed=params["seed"])
per_query = {}
quality = report.table(extras.retrieval_table(spaces, gallery_y, ks=params["precision_at"],
                                          chunk_size=params["chunk_size"], context=context, per_query=per_query),
                       "retrieval_quality", item="4.1",
                       title="Retrieval over the whole gallery: learned features vs raw pixels, cosine vs Euclidean")
quality

# %%
check = extras.baseline_check(quality, learned=f"{params['model']} features", baseline="raw pixels")
display(Markdown(f"Learned features beat raw pixels on **{int(check['learned better'].sum())} of {len(check)}** "
                 "(metric, score) pairs, on the same queries."))
display(report.table(check, "learned_vs_pixels", item="4.1", title="Do learned features beat raw pixels? (same queries)"))
report.per_example("retrieval", item="4.1",
                   **extras.paired_scores(per_query, learned=f"{params['model']} features", baseline="raw pixels"))

# %% [markdown]
# ## 4.2 Query by image
# Presented: a user's image file (`plane.PNG`, any size) goes through the trained model and
# `show_similar_images(similar_images)` shows the most similar CIFAR-10 images by learned features.
#
# The shipped `assets/plane.png` is a CIFAR-10 test-set airplane upscaled to 128x128; set `query_image` in the
# parameters cell (or `params/04_extras.yaml`) to any PNG/JPEG file of your own. It is read in any mode (RGB,
# RGBA, greyscale, palette, 16-bit), turned upright by its EXIF orientation, centre-cropped to a square and
# resized to 32x32 with an antialiased bilinear filter, like the training images.

# %%
query_path = params["query_image"] or extras.SHIPPED_QUERY
image, _, description = extras.resolve_query(query_path, test_x=query_x, test_y=query_y)
image_f = embedder.embed(image[None])
(predicted, confidence), = embedder.predict(image_f)
fig = figures.show_similar_images(image, retrieval.neighbours(image_f, gallery_f, k=params["top_k"]), gallery_x, gallery_y,
                             query_title=Path(query_path).name)
fig.suptitle(f"{description}; the classifier says {predicted} ({100 * confidence:.0f}%)", fontsize=10)
report.figure(fig, "query_by_image", item="4.2", title=f"Images most similar to {Path(query_path).name}");

# %% [markdown]
# ### The learned feature space (extra)
# A t-SNE map of test-image features (L2-normalised, so distances follow cosine), coloured by class: the
# clusters are what makes nearest-neighbour search by learned features work.

# %%
if params["tsne_points"]:
    fig = figures.tsne_figure(query_f, query_y, n=params["tsne_points"], seed=params["seed"])
    report.figure(fig, "tsne", item="4.2", title="t-SNE of the learned features (extra)")

# %%
report.finish();
