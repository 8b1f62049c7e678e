"""Chapter 3: CIFAR-10-4K split, per-sample RandAugment, the MPL step and its feedback sign, resume, TensorBoard."""
import pytest
import torch
import torch.nn as nn

from lib import augment
from lib import params as P
from lib.batches import SSLBatch
from lib.chapters import semi_supervised, ssl_curves
from lib.evaluate import classification
from lib.methods import ssl as ssl_methods
from lib.models import build_model, count_parameters
from lib.train import fit


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny networks here run fastest on one thread (and do not fight other processes for the 2 cores)."""
    with augment.cpu_threads(1):
        yield


def smoke_params(**overrides):
    return P.load("03_semi_supervised", "smoke", {"data": "synthetic", **overrides})


def test_cifar10_4k_split_sizes_balance_and_disjointness():
    labels = torch.arange(50_000) % 10
    parts = semi_supervised.make_ssl_split(labels, labelled=4000, val=5000, unlabelled=-1, seed=0)
    assert {k: len(v) for k, v in parts.items()} == {"val": 5000, "labelled": 4000, "unlabelled": 41_000}
    for name, per_class in (("val", 500), ("labelled", 400), ("unlabelled", 4100)):
        assert torch.bincount(labels[parts[name]], minlength=10).tolist() == [per_class] * 10
    union = torch.cat(list(parts.values()))
    assert len(union.unique()) == 50_000  # disjoint and covering the training set
    again = semi_supervised.make_ssl_split(labels, labelled=4000, val=5000, unlabelled=-1, seed=0)
    assert all(torch.equal(parts[k], again[k]) for k in parts)  # seeded
    small = semi_supervised.make_ssl_split(labels, labelled=100, val=100, unlabelled=1000, seed=0)
    assert len(small["unlabelled"]) == 1000 and torch.bincount(labels[small["unlabelled"]]).tolist() == [100] * 10
    assert not set(small["unlabelled"].tolist()) & (set(small["labelled"].tolist()) | set(small["val"].tolist()))


def test_load_ssl_splits_follows_the_params():
    params = smoke_params()
    splits = semi_supervised.load_ssl_splits(params)
    assert splits.sizes() == {"validation": params["val_size"], "labelled": params["labelled_size"],
                              "unlabelled": params["unlabelled_size"], "test": params["test_subset"]}
    table = semi_supervised.split_table(splits, {"validation": 5000, "labelled": 4000, "unlabelled": 41000},
                                        profile="smoke").set_index("part")
    assert table.loc["labelled", "presented"] == 4000
    assert table["this run"].tolist() == [params["val_size"], params["labelled_size"], params["unlabelled_size"],
                                          params["test_subset"]]
    per_class = params["labelled_size"] // 10
    assert table.loc["labelled", "per class (min-max)"] == f"{per_class}-{per_class}"
    assert table.loc["unlabelled", "labels used in training"] == "no (images only)"


def test_wrn28_2_has_the_reference_parameter_count():
    assert count_parameters(build_model("wrn28_2")) == 1_467_610


def test_ssl_batches_are_a_function_of_the_step():
    params = smoke_params()
    splits = semi_supervised.load_ssl_splits(params)
    b = semi_supervised.ssl_batches(splits.labelled_x, splits.labelled_y, splits.unlabelled_x,
                                    {**params, "batch_size": 8, "mu": 2}, "cpu")
    stream = b.forever(0)
    batches = [next(stream) for _ in range(15)]  # crosses an unlabelled epoch (200 // 16 = 12 steps)
    resumed = next(b.forever(13))
    for field in ("x_l", "y_l", "x_uw", "x_us"):
        assert torch.equal(getattr(resumed, field), getattr(batches[13], field)), field
    assert not torch.equal(batches[0].x_uw, batches[0].x_us)  # two different views
    with pytest.raises(ValueError, match="unlabelled batch 400 is larger"):
        semi_supervised.ssl_batches(splits.labelled_x, splits.labelled_y, splits.unlabelled_x,
                                    {**params, "batch_size": 8, "mu": 50}, "cpu")


def _batches(params, splits, kind="mpl"):
    batches, val, test = semi_supervised._loaders(splits, params, torch.device("cpu"), unlabelled=kind != "supervised")
    return batches, val


def test_one_mpl_step_changes_teacher_and_student():
    params = smoke_params(student_wait_steps=0, warmup_steps=0)  # the reference's warm-up starts at LR 0
    splits = semi_supervised.load_ssl_splits(params)
    method = semi_supervised.build_method("mpl", params)
    method.setup(torch.device("cpu"), None)
    before = {k: {n: p.detach().clone() for n, p in getattr(method, k).named_parameters()} for k in ("teacher", "student")}
    batches, _ = _batches(params, splits)
    logs = method.train_step(next(batches.forever(0)))
    for k in ("teacher", "student"):
        changed = [n for n, p in getattr(method, k).named_parameters() if not torch.equal(p, before[k][n])]
        assert len(changed) > 0.9 * len(before[k]), f"{k}: only {len(changed)} of {len(before[k])} tensors moved"
    for key in ("student_loss", "teacher_loss", "mask_ratio", "mpl_h", "lr_teacher"):
        assert torch.isfinite(torch.as_tensor(logs[key])), key
    assert isinstance(logs["lr_teacher"], float)  # a Python number: no host tensor per step
    assert method.counter.value == 1


@pytest.mark.parametrize("feedback", ["derivation", "reference"])
def test_feedback_term_rewards_helpful_pseudo_labels(feedback):
    # descent on h * CE(teacher, pseudo) raises the label's log-likelihood when h > 0, lowers it when h < 0;
    # the derivation's h = before - after rewards labels that lowered the student's loss, the reference's h flips it
    flip = 1 if feedback == "derivation" else -1
    for before, after, sign in ((1.0, 0.5, +flip), (0.5, 1.0, -flip)):
        logits = nn.Parameter(torch.zeros(4, 3))
        labels = torch.tensor([0, 1, 2, 0])
        term, h = ssl_methods.mpl_feedback(torch.tensor(before), torch.tensor(after), logits, labels, sign=feedback)
        assert torch.sign(h) == sign
        term.backward()
        with torch.no_grad():
            new = logits - 0.5 * logits.grad
            gain = new.log_softmax(1).gather(1, labels[:, None]).sum() - logits.log_softmax(1).gather(1, labels[:, None]).sum()
        assert torch.sign(gain) == sign


@pytest.mark.parametrize("teacher_is_right", [True, False])
def test_student_feedback_sign_in_a_constructed_mpl_step(teacher_is_right):
    """Linear teacher and student on 2-d points: pseudo labels that agree with the true labels lower the student's
    labelled loss (derivation's h > 0, a reward for the teacher); flipped pseudo labels raise it (h < 0)."""
    torch.manual_seed(0)
    x_l = torch.tensor([[2.0, 0.0], [-2.0, 0.0]]).repeat(4, 1)
    y_l = torch.tensor([0, 1]).repeat(4)
    x_u = x_l + 0.1 * torch.randn_like(x_l)
    teacher, student = nn.Linear(2, 2), nn.Linear(2, 2)
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]) * (1 if teacher_is_right else -1))
        teacher.bias.zero_()
        student.weight.zero_()
        student.bias.zero_()
    method = ssl_methods.MetaPseudoLabels(teacher, student, teacher_optimizer=torch.optim.SGD(teacher.parameters(), lr=0.1),
                                student_optimizer=torch.optim.SGD(student.parameters(), lr=0.5), label_smoothing=0.0,
                                temperature=1.0, threshold=2.0, lambda_u=0.0, uda_steps=1,
                                feedback="derivation")
    logs = method.train_step(SSLBatch(x_l, y_l, x_u, x_u))
    assert (logs["mpl_h"] > 0) == teacher_is_right and logs["mpl_h"] != 0
    assert logs["mask_ratio"] == 0  # threshold 2 > any probability: no UDA term


@pytest.mark.parametrize("feedback", ["reference", "derivation"])
def test_one_mpl_step_equals_the_reference_equations(feedback):
    """Teacher and student WRNs (dense dropout on, BN in training mode), one MetaPseudoLabels step against the
    reference's main.py equations written out with autograd and plain SGD on copies of the same networks."""
    import copy

    torch.manual_seed(0)
    p = smoke_params(width=0.125)
    teacher, student = semi_supervised.wrn(p, 0.2), semi_supervised.wrn(p, 0.2)
    T, S = copy.deepcopy(teacher), copy.deepcopy(student)
    lr_t, lr_s, ls, temp, thr, lam, uda_steps = 0.3, 0.2, 0.15, 0.7, 0.3, 8.0, 4
    method = ssl_methods.MetaPseudoLabels(
        teacher, student, teacher_optimizer=torch.optim.SGD(teacher.parameters(), lr=lr_t),
        student_optimizer=torch.optim.SGD(student.parameters(), lr=lr_s), label_smoothing=ls, temperature=temp,
        threshold=thr, lambda_u=lam, uda_steps=uda_steps, feedback=feedback)
    method.setup(torch.device("cpu"), None)
    g = torch.Generator().manual_seed(1)
    x_l, x_uw, x_us = (torch.randn(n, 3, 32, 32, generator=g) for n in (6, 12, 12))
    y_l = torch.randint(0, 10, (6,), generator=g)
    torch.manual_seed(5)
    logs = method.train_step(SSLBatch(x_l, y_l, x_uw, x_us))

    torch.manual_seed(5)  # the same dropout masks, drawn in the same order
    CE = nn.functional.cross_entropy
    t_logits = T(torch.cat([x_l, x_uw, x_us]))
    t_l, (t_uw, t_us) = t_logits[:6], t_logits[6:].chunk(2)
    t_loss_l = CE(t_l, y_l, label_smoothing=ls)
    soft = torch.softmax(t_uw.detach() / temp, -1)
    max_probs, hard = soft.max(-1)
    mask = max_probs.ge(thr).float()
    t_loss_u = torch.mean(-(soft * torch.log_softmax(t_us, -1)).sum(-1) * mask)
    t_loss_uda = t_loss_l + lam * min(1.0, 1 / uda_steps) * t_loss_u
    s_logits = S(torch.cat([x_l, x_us]))
    s_loss_l_old = CE(s_logits[:6].detach(), y_l)
    s_loss = CE(s_logits[6:], hard, label_smoothing=ls)
    for prm, grad in zip(S.parameters(), torch.autograd.grad(s_loss, list(S.parameters()), allow_unused=True)):
        prm.data -= lr_s * (grad if grad is not None else 0)  # reference blocks leave some bn1 unused
    with torch.no_grad():
        s_loss_l_new = CE(S(x_l), y_l)
    dot = s_loss_l_new - s_loss_l_old if feedback == "reference" else s_loss_l_old - s_loss_l_new
    t_loss = t_loss_uda + dot * CE(t_us, t_us.detach().argmax(-1))
    for prm, grad in zip(T.parameters(), torch.autograd.grad(t_loss, list(T.parameters()), allow_unused=True)):
        prm.data -= lr_t * (grad if grad is not None else 0)

    assert float(logs["mpl_h"]) == pytest.approx(float(dot), abs=1e-6)
    assert float(logs["teacher_loss"]) == pytest.approx(float(t_loss.detach()), rel=1e-5)
    assert 0 < float(logs["mask_ratio"]) < 1  # both parts of the UDA term are exercised
    for ours, ref in ((method.student, S), (method.teacher, T)):
        for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
            assert torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-4), name


def test_networks_and_finetune_are_built_as_the_reference_builds_them():
    p = smoke_params(width=0.125, bn_momentum=0.001)
    method = semi_supervised.build_method("mpl", p)
    for net in (method.teacher, method.student):
        assert isinstance(net.drop, nn.Dropout) and net.drop.p == 0.2  # dense dropout before the classifier
        assert all(block.dropout == 0 for group in (net.block1, net.block2, net.block3) for block in group)
        assert {m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)} == {0.001}
    # weight decay: everything but the BN parameters decays (the classifier's bias too)
    decayed, exempt = method.t_opt.param_groups
    names = {id(prm): n for n, prm in method.teacher.named_parameters()}
    assert all("bn" in names[id(prm)] for prm in exempt["params"]) and exempt["weight_decay"] == 0
    assert any(names[id(prm)] == "fc.bias" for prm in decayed["params"])
    ft = semi_supervised.finetune_method(method.student, p)
    assert ft.model.drop.p == 0 and ft.ls == 0.15
    assert torch.equal(ft.model.fc.weight, method.student.fc.weight)
    group = ft.opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (3e-5, 0.9, True, 0.0)
    splits = semi_supervised.load_ssl_splits(p)
    loader = semi_supervised.finetune_batches(splits, {**p, "finetune_batch_size": 30}, torch.device("cpu"))
    assert len(loader) == 4 and loader.strong is not None  # 100 labelled images: 3 full batches and 10 more
    sizes = [len(y) for _, y in loader.epoch(0)]
    assert sizes == [30, 30, 30, 10]
    assert torch.equal(torch.cat([y for _, y in loader.epoch(1)]), splits.labelled_y)  # the same order every epoch


def test_block_styles_differ_only_in_what_projecting_blocks_feed_their_first_convolution():
    torch.manual_seed(0)
    ref = build_model("wrn28_2", width=0.25, block_style="mpl-pytorch")
    tf = build_model("wrn28_2", width=0.25, block_style="tensorflow")
    tf.load_state_dict(ref.state_dict())
    assert count_parameters(ref) == count_parameters(tf)
    x = torch.randn(2, 3, 32, 32)
    ref.eval(), tf.eval()
    assert not torch.allclose(ref(x), tf(x))
    # the first group's projecting block activates before the residual in both styles
    assert torch.allclose(ref.block1(ref.conv1(x)), tf.block1(tf.conv1(x)))
    with pytest.raises(ValueError, match="block_style 'keras'"):
        build_model("wrn28_2", block_style="keras")


def test_learning_rate_schedules_reproduce_the_presented_student_lr():
    # the presented logs print the student's LR: 0.0316 at 129,000 / 300,000 and 0.0373 at 39,000 / 100,000 steps
    from lib.train import warmup_cosine

    for step, total, shown in ((129_000, 300_000, 0.0316), (39_000, 100_000, 0.0373)):
        opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.05)
        sched = warmup_cosine(opt, total_steps=total, warmup_steps=5000, wait_steps=3000)
        assert 0.05 * sched.lr_lambdas[0](step) == pytest.approx(shown, abs=6e-5)
    lam = warmup_cosine(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1), total_steps=100, warmup_steps=10,
                        wait_steps=5).lr_lambdas[0]
    assert [lam(s) for s in (0, 4, 5, 10, 15)] == [0, 0, 5 / 15, 10 / 15, 1.0]  # the reference's s / (wait + warm-up)


def _fit_mpl(params, splits, ckpt_dir, **kw):
    method = semi_supervised.build_method("mpl", params)
    batches, val = _batches(params, splits)
    res = fit(method, batches.forever, total_steps=params["total_steps"], eval_every=params["eval_every"],
              evaluate=lambda: classification.topk_metrics(*classification.predict(method.eval_model, val)), select="acc",
              ckpt_dir=ckpt_dir, device="cpu", seed=params["seed"], **kw)
    return method, res


def test_mpl_resume_equals_an_uninterrupted_run(tmp_path):
    params = smoke_params(total_steps=4, eval_every=2, student_wait_steps=0, unlabelled_size=100, val_size=50)
    splits = semi_supervised.load_ssl_splits(params)
    full, res_full = _fit_mpl(params, splits, tmp_path / "a")
    part, res_part = _fit_mpl(params, splits, tmp_path / "b", stop_after=3)
    assert not res_part.finished
    resumed = semi_supervised.build_method("mpl", {**params, "seed": 123})  # other initial weights: everything must come from disk
    batches, val = _batches(params, splits)
    res = fit(resumed, batches.forever, total_steps=params["total_steps"], eval_every=params["eval_every"],
              evaluate=lambda: classification.topk_metrics(*classification.predict(resumed.eval_model, val)), select="acc",
              ckpt_dir=tmp_path / "b", device="cpu", seed=params["seed"])
    assert res.finished
    ref, got = full.state_dict(), resumed.state_dict()
    assert set(ref) == {"teacher", "student", "teacher_optimizer", "student_optimizer", "step", "teacher_scheduler",
                        "student_scheduler", "ema"}
    for part_name in ("teacher", "student", "ema"):
        for k, v in ref[part_name].items():
            assert torch.equal(v, got[part_name][k]), f"{part_name}.{k}"
    assert got["step"] == ref["step"] == {"value": 4}
    assert got["student_scheduler"]["last_epoch"] == ref["student_scheduler"]["last_epoch"]
    cols = ["step", "train_student_loss", "train_teacher_loss", "train_mask_ratio", "acc", "top5", "loss"]
    assert res.history[cols].equals(res_full.history[cols])


def test_tensorboard_read_back_returns_the_logged_values(tmp_path):
    params = smoke_params(total_steps=4, eval_every=2, val_size=50)
    splits = semi_supervised.load_ssl_splits(params)
    run = semi_supervised.train_ssl("supervised", splits, params, ckpt_root=tmp_path / "ckpt", tb_root=tmp_path / "tb")
    scalars = ssl_curves.read_tensorboard(tmp_path / "tb")
    assert set(scalars.run) == {"supervised"}
    val = scalars[scalars.tag == "eval/val_acc"].set_index("step").value
    assert val.index.tolist() == run.history.step.tolist()
    assert val.tolist() == pytest.approx(run.history.val_acc.tolist(), abs=1e-6)
    loss = scalars[scalars.tag == "epoch/train_loss"].value
    assert loss.tolist() == pytest.approx(run.history.train_loss.tolist(), rel=1e-6)
    assert {"train/loss", "train/data_time", "train/batch_time", "train/lr", "eval/val_top5"} <= set(scalars.tag)
    assert 0 <= run.test["acc"] <= 1 and run.test["top5"] >= run.test["acc"]
    fig = ssl_curves.curves_figure(scalars, runs={"supervised": "supervised"})
    assert len(fig.axes) == 4
    with pytest.raises(FileNotFoundError, match="no TensorBoard scalars"):
        ssl_curves.read_tensorboard(tmp_path / "ckpt")


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown SSL method 'fixmatch'"):
        semi_supervised.build_method("fixmatch", smoke_params())


def test_mpl_trains_its_own_steps_in_the_full_profile_and_the_tables_say_so():
    from lib.chapters import mpl_reference

    full = P.load("03_semi_supervised", "full")
    assert semi_supervised.steps_of("mpl", full) == 65_000
    assert semi_supervised.steps_of("uda", full) == semi_supervised.steps_of("supervised", full) == 30_000
    long_ = P.load("03_semi_supervised", "full-long")
    assert {semi_supervised.steps_of(k, long_) for k in semi_supervised.KINDS} == {300_000}
    row = mpl_reference.reference_recipe_table({**full, "profile": "full"}).set_index("param").loc["total_steps"]
    assert row["this run"] == 65_000 and "log-linear" in row["why different"]
    smoke = P.load("03_semi_supervised", "smoke")  # total_steps 8
    lr = semi_supervised.build_method("mpl", {**smoke, "mpl_total_steps": 50}).s_sched.lr_lambdas[0]
    assert lr(25) > 0 and lr(50) == 0  # the student's cosine spans MPL's 50 steps, not 8
    assert semi_supervised.build_method("uda", {**smoke, "mpl_total_steps": 50}).sched.lr_lambdas[0](25) == 0
