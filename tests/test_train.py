import itertools
import time

import pandas as pd
import pytest
import torch
import torch.nn as nn

from lib import augment, batches
from lib import data as D
from lib.chapters import ssl_curves
from lib.evaluate.classification import classification_metrics, predict
from lib.methods.classifier import Classifier
from lib.models import build_model, count_parameters
from lib.train import fit, make_optimizer, make_scheduler


def tiny_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Dropout(0.1), nn.Linear(128, 10))


def setup(init_seed=0):
    torch.manual_seed(init_seed)
    ds = D.make_synthetic(160, 40)
    train = batches.BatchLoader(ds.train_x, ds.train_y, batch_size=32, seed=0)
    val = batches.BatchLoader(ds.test_x, ds.test_y, batch_size=40, train=False)
    model = tiny_net()
    opt = make_optimizer(model.parameters(), name="sgd", lr=0.05, nesterov=True)
    sched = make_scheduler(opt, name="onecycle", total_steps=20)
    method = Classifier(model, opt, sched, label_smoothing=0.1)

    def evaluate():
        m = classification_metrics(*predict(model, val))
        return {"val_acc": m["acc"], "val_loss": m["loss"]}

    return method, train, evaluate


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    ds = D.make_synthetic(64, 10)
    model = tiny_net()
    method = Classifier(model, make_optimizer(model.parameters(), name="adam", lr=3e-3))
    batch = (augment.normalize(ds.train_x[:32]), ds.train_y[:32])
    losses = [method.train_step(batch)["loss"].item() for _ in range(40)]
    assert losses[-1] < 0.5 * losses[0]


def test_resume_gives_exactly_the_uninterrupted_result(tmp_path):
    method, train, evaluate = setup()
    full = fit(method, train.forever, total_steps=20, evaluate=evaluate, steps_per_epoch=5,
               ckpt_dir=tmp_path / "a", device="cpu", seed=0)
    reference = {k: v.clone() for k, v in method.model.state_dict().items()}

    method, train, evaluate = setup()
    part = fit(method, train.forever, total_steps=20, evaluate=evaluate, steps_per_epoch=5,
               ckpt_dir=tmp_path / "b", ckpt_every=3, stop_after=7, device="cpu", seed=0)
    assert not part.finished and len(part.history) == 1
    method, train, evaluate = setup(init_seed=123)  # fresh objects, different initial weights: all must come from disk
    resumed = fit(method, train.forever, total_steps=20, evaluate=evaluate, steps_per_epoch=5,
                  ckpt_dir=tmp_path / "b", device="cpu", seed=0)
    assert resumed.finished
    for k, v in method.model.state_dict().items():
        assert torch.equal(v, reference[k]), k
    cols = ["step", "train_loss", "train_acc", "val_acc", "val_loss", "lr"]
    assert resumed.history[cols].equals(full.history[cols])
    assert resumed.best == full.best


def test_best_checkpoint_tracks_validation_metric(tmp_path):
    method, train, evaluate = setup()
    res = fit(method, train.forever, total_steps=20, evaluate=evaluate, steps_per_epoch=5,
              ckpt_dir=tmp_path, device="cpu")
    assert len(res.history) == 4 and res.best_checkpoint.is_file()
    assert res.best["value"] == res.history["val_acc"].max()
    assert res.history["val_acc"].iloc[-1] > 0.2  # learnable synthetic data: above chance (0.1)
    again = fit(method, train.forever, total_steps=20, evaluate=evaluate, steps_per_epoch=5,
                ckpt_dir=tmp_path, device="cpu")
    assert again.history.equals(res.history)  # a finished run is reused, not retrained


def test_tensorboard_scalars_are_written(tmp_path):
    method, train, evaluate = setup()
    result = fit(method, train.forever, total_steps=10, evaluate=evaluate, steps_per_epoch=5, tb_dir=tmp_path,
                 log_every=2, device="cpu")
    scalars = ssl_curves.read_tensorboard(tmp_path)
    val = scalars[scalars.tag == "eval/val_acc"]
    assert val.step.tolist() == [5, 10]
    assert val.value.tolist() == pytest.approx(result.history["val_acc"].tolist())
    loss = scalars[scalars.tag == "train/loss"]
    assert loss.step.tolist() == [2, 4, 6, 8, 10] and loss.value.notna().all()


def test_schedulers_shapes():
    p = [nn.Parameter(torch.zeros(1))]
    lrs = {}
    for name in ("constant", "step", "cosine", "onecycle"):
        opt = torch.optim.SGD(p, lr=1.0)
        s = make_scheduler(opt, name=name, total_steps=100, steps_per_epoch=10, step_size_epochs=3, warmup_steps=10)
        out = []
        for _ in range(100):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            s.step()
        lrs[name] = out
    assert set(lrs["constant"]) == {1.0}
    assert lrs["step"][29] == 1.0 and lrs["step"][30] == pytest.approx(0.1)
    assert lrs["onecycle"][9] == pytest.approx(1.0) and lrs["onecycle"][0] < 0.2 and lrs["onecycle"][-1] < 0.02
    assert max(lrs["cosine"]) == pytest.approx(1.0) and lrs["cosine"][-1] < 0.01
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_scheduler(torch.optim.SGD(p, lr=1.0), name="warm", total_steps=1)


def test_resnet18_has_the_cifar_parameter_count():
    assert count_parameters(build_model("resnet18")) == 11_173_962


def test_unknown_model_lists_registered_names():
    with pytest.raises(KeyError, match="registered models: .*resnet18"):
        build_model("resnet19")


def test_trained_classifier_is_recorded_and_reloadable(tmp_path):
    from lib import params as P
    from lib.chapters import supervised

    params = P.load("01_supervised", "smoke", {"data": "synthetic", "epochs": 1})
    splits = supervised.load_splits(params)
    ckpt_root = tmp_path / "smoke" / "checkpoints" / "01_supervised"
    trained = supervised.train_classifier("resnet18", splits, params, ckpt_root=ckpt_root)
    model, info = supervised.load_classifier(tmp_path / "smoke", "resnet18")
    assert info["test_acc"] == trained.test_acc and info["width"] == params["width"]
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model(x), trained.model.eval()(x))
    with pytest.raises(FileNotFoundError, match=r"no checkpoint for 'drn_c_26'.*--profile smoke --only 01"):
        supervised.load_classifier(tmp_path / "smoke", "drn_c_26")
    with pytest.raises(FileNotFoundError, match=r"run chapter 1 first: ./run_all.sh --profile quick --only 01"):
        supervised.load_classifier(tmp_path / "quick", "resnet18")


def test_macro_auc_matches_a_hand_computed_example():
    from lib.chapters.sweep import macro_auc

    probs = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.6, 0.2, 0.2], [0.1, 0.3, 0.6]])
    labels = torch.tensor([0, 1, 2, 2])
    # one-vs-rest, counting (positive, negative) pairs ranked correctly:
    # class 0: 0.7 vs (0.2, 0.6, 0.1) -> 3/3; class 1: 0.5 vs (0.2, 0.2, 0.3) -> 3/3;
    # class 2: (0.2, 0.6) vs (0.1, 0.3) -> 3/4 (0.2 < 0.3)
    assert macro_auc(torch.log(probs), labels) == pytest.approx((1 + 1 + 0.75) / 3)


def test_classification_report_all_but_cat_is_mean_per_class_accuracy():
    from lib.chapters.supervised import (ALL_BUT_CAT, class_report_comparisons,
                                         classification_report_table)
    from lib.spec import PRESENTED

    classes = ("a", "cat", "b")
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 0, 0, 1, 1, 0, 2, 0])
    # a: 3 of 4 right, 5 predicted (precision 0.6, recall 0.75); cat: 1 of 2 (0.5, 0.5);
    # b: 1 of 2 (1.0, 0.5). Accuracy 5/8.
    presented = {**PRESENTED, "class_report": {"a": (0.9, 0.8, 0.85)}}
    df = classification_report_table(torch.nn.functional.one_hot(preds, 3).float(), labels, classes,
                                      presented).set_index("class")
    assert (df.loc["a", "precision"], df.loc["a", "recall"]) == (0.6, 0.75)
    assert df.loc["a", "presented recall"] == 0.8 and df.loc["a", "presented support"] == 1000
    assert pd.isna(df.loc["b", "presented recall"])
    # the nine-class "ACC" of the slide: recall averaged over the classes other than cat, not mean f1
    # (f1 of a and b are both 2/3 here)
    assert df.loc[ALL_BUT_CAT, "recall"] == 0.625 and df.loc[ALL_BUT_CAT, "support"] == 6
    assert df.loc[ALL_BUT_CAT, "presented recall"] == PRESENTED["all_but_cat_average"]
    assert pd.isna(df.loc[ALL_BUT_CAT, "f1"])
    assert df.loc["accuracy", "f1"] == 0.625 and df.loc["accuracy", "support"] == 8
    assert df.loc["macro avg", "precision"] == 0.7 and df.loc["macro avg", "recall"] == 0.583
    assert df.loc["weighted avg", "precision"] == 0.675 and df.loc["weighted avg", "recall"] == 0.625
    weighted = PRESENTED["class_report_summary"]["weighted avg"]
    assert df.loc["weighted avg", "presented f1"] == weighted[2]
    assert df.loc["macro avg", "presented support"] == PRESENTED["class_report_total_support"]
    values = class_report_comparisons(df.reset_index())
    assert values["1.10/all_but_cat"] == 0.625 and values["1.10/weighted_avg/precision"] == 0.675
    assert "1.10/a/recall" not in values  # only classes the slide reports
    with pytest.raises(ValueError, match="no class named 'cat'"):
        classification_report_table(torch.zeros(2, 2), torch.tensor([0, 1]), ("a", "b"))


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_switching_to_fused_keeps_the_state_and_the_updates(name):
    # Method.setup does this on CUDA; torch also has fused SGD/Adam kernels on the CPU, so the switch is testable here
    from lib.train import move_optimizer

    def is_fused(optimizer):
        return all(g.get("fused") for g in optimizer.param_groups)

    torch.manual_seed(0)
    a = tiny_net()
    b = tiny_net()
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()  # no dropout: both networks must see identical computations
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    opts = [make_optimizer(m.parameters(), name=name, lr=0.01, nesterov=name == "sgd", weight_decay=5e-4) for m in (a, b)]

    def step(m, o):
        o.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        o.step()

    for m, o in zip((a, b), opts):
        step(m, o)
    move_optimizer(opts[1], fused=True)  # mid-run: momenta / Adam moments and step count must carry over
    assert is_fused(opts[1]) and not is_fused(opts[0])
    for _ in range(3):
        for m, o in zip((a, b), opts):
            step(m, o)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)


def test_fit_reports_each_steps_data_and_step_time():
    """``train_data_time``: the mean seconds a step waited for its batch; ``train_batch_time``: the mean
    seconds of the whole step, batch and update; both per step of the evaluation window, not summed."""
    method, train, evaluate = setup()
    ready = list(itertools.islice(train.forever(), 5))  # made beforehand: a batch costs only the sleep
    update = method.train_step

    def slow_batches(start):
        for batch in itertools.cycle(ready):
            time.sleep(0.05)
            yield batch

    def slow_update(batch):
        time.sleep(0.05)
        return update(batch)

    method.train_step = slow_update
    res = fit(method, slow_batches, total_steps=10, evaluate=evaluate, eval_every=5, device="cpu", log_every=3)
    hist = res.history
    assert len(hist) == 2  # two windows of five steps: a sum over one would be five times the sleep
    assert hist["train_data_time"].between(0.05, 0.15).all(), hist["train_data_time"]
    update_time = hist["train_batch_time"] - hist["train_data_time"]
    assert update_time.between(0.05, 0.2).all(), update_time


def test_compile_and_amp_settings():
    from lib.train import amp_dtype, resolve_compile

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compile("auto", cuda) and not resolve_compile("auto", cpu)
    assert resolve_compile(True, cpu) and not resolve_compile(False, cuda)
    with pytest.raises(ValueError, match="compile must be auto, true or false"):
        resolve_compile("yes", cpu)
    assert amp_dtype(cpu, "auto") is None and amp_dtype(cpu, False) is None and amp_dtype(cpu, "off") is None
    assert amp_dtype(cpu, True) is torch.bfloat16 and amp_dtype(cpu, "fp16") is torch.float16
    with pytest.raises(ValueError, match="amp must be"):
        amp_dtype(cpu, "half")


def test_ema_moves_towards_the_model_and_copies_buffers():
    from lib.train import EMA

    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.75)
    start = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(3.0)
    ema.update(model)
    for e, s, p in zip(ema.module.parameters(), start, model.parameters()):
        torch.testing.assert_close(e, 0.75 * s + 0.25 * p)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 3.0))
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_hyperparameter_table_shows_both_recipes_and_marks_the_projects_choices():
    from lib import params as P
    from lib.chapters import supervised
    from lib.spec import PRESENTED

    params = P.load("01_supervised", "full")
    recipes = {n: supervised.recipe(params, n) for n in ("presented", "strong")}
    runs = supervised.recipe_runs(params)
    assert runs == {"strong": "40, resnet18 60 (accuracy table)",
                    "presented": "60 (ResNet-18 presented-recipe row); 10 (1.7 sweep)"}
    df = supervised.hyperparameter_table(recipes, epochs=runs).set_index("hyperparameter")
    pres, strong = "presented recipe, as run", "strong recipe (project's choice), as run"
    for name, value in PRESENTED["hyperparameters"].items():
        assert df.loc[name, "presented"] == value
    assert df.loc["learning rate", pres] == 0.001 and df.loc["scheduler", pres] == "StepLR"
    assert df.loc["optimizer", pres] == "SGD + momentum"
    # what the slide does not give is said so, and the presented recipe's value is our choice
    for name in ("StepLR step size (epochs)", "StepLR gamma", "momentum", "epochs"):
        assert df.loc[name, "presented"] == "not on the slide"
        assert df.loc[name, pres].endswith("(project's choice)")
    assert df.loc["StepLR gamma", strong] == "-" and df.loc["epochs", strong] == runs["strong"]
    assert df.loc["Cutout (px)", strong] == 16 and df.loc["Cutout (px)", pres] == "off (project's choice)"


def test_sweep_marks_the_slides_bold_cells_and_ours_per_learning_rate():
    from lib.chapters import sweep

    rows = [(16, 1e-4, 0.90, 0.91), (32, 1e-4, 0.92, 0.90), (16, 1e-3, 0.80, 0.85),
            (256, 1e-3, 0.95, 0.96)]
    df = pd.DataFrame(rows, columns=["batch size", "learning rate", "val AUC", "test AUC"])
    out = sweep.sweep_with_presented(df).set_index(["batch size", "learning rate"])
    assert out.loc[(32, 1e-4), "presented test AUC"] == 0.9570
    assert out["bold on the slide (best of its lr)"].tolist() == [False, True, False, True]
    assert out["best of its lr on validation"].tolist() == [False, True, False, True]
    assert out["best of its lr on test"].tolist() == [True, False, False, True]


def test_resnet_margin_table_computes_the_slides_plus_0_7():
    from lib.chapters import supervised

    df = supervised.resnet_margin_table({"resnet18": 95.02, "resnet50": 94.62}).set_index("model")
    # presented minus pytorch-cifar: 93.79 - 93.02, 94.39 - 93.62, 94.5 - 93.75
    assert df["presented - pytorch-cifar (pp)"].tolist() == [0.77, 0.77, 0.75, 0.76]
    assert df.loc["resnet18", "this run - pytorch-cifar (pp)"] == 2.0
    assert pd.isna(df.loc["resnet101", "this run - pytorch-cifar (pp)"])
    assert df.loc["mean", "this run - pytorch-cifar (pp)"] == 1.5
    assert (df["the slide's remark (pp)"] == 0.7).all()


def test_pretrained_row_is_not_run_offline_with_the_loaders_exact_message(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    from lib import params as P
    from lib.chapters import supervised
    from lib.models import build_model
    from lib.models.efficientnet import PretrainedWeightsUnavailable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # nothing to find offline
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        build_model("efficientnet_b0", pretrained=True)
    params = P.load("01_supervised", "smoke", {"data": "synthetic"})
    assert params["pretrained_models"] == []  # smoke and quick never need the weights
    assert P.load("01_supervised", "quick")["pretrained_models"] == []
    assert P.load("01_supervised", "full")["pretrained_models"] == ["efficientnet_b0"]
    splits = supervised.load_splits(params)
    run, message = supervised.train_pretrained("efficientnet_b0", splits, params,
                                               ckpt_root=tmp_path / "ckpt")
    assert run is None and message == str(err.value)
    row = supervised.not_run_rows({supervised.pretrained_run_name("efficientnet_b0"): message},
                                  profile="full", source="synthetic").iloc[0]
    assert row["model"] == "efficientnet_b0-imagenet-224"
    assert row["status"] == "not run: no weights" and row["note"] == message
