"""TwoMoon (SPEC 3.2): the data set, the three learners and their accuracy table, on the smoke settings."""
import pytest
import torch

from lib import params as P
from lib.chapters import twomoon

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_moons_are_seeded_standardised_and_labelled_per_class():
    data = twomoon.make_two_moons(n_samples=200, noise=0.1, labels_per_class=3, seed=0)
    assert data.x.shape == (200, 2) and data.x.dtype == torch.float32
    torch.testing.assert_close(data.x.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert torch.bincount(data.y[data.labelled]).tolist() == [3, 3]
    assert len(data.unlabelled) == 194 and not set(data.unlabelled.tolist()) & set(data.labelled.tolist())
    again = twomoon.make_two_moons(n_samples=200, noise=0.1, labels_per_class=3, seed=0)
    assert torch.equal(data.x, again.x) and torch.equal(data.labelled, again.labelled)
    other = twomoon.make_two_moons(n_samples=200, noise=0.1, labels_per_class=3, seed=1)
    assert not torch.equal(data.labelled, other.labelled)


def test_run_trains_three_learners_and_tabulates_their_accuracy():
    params = P.load("03_semi_supervised", "smoke")
    data, models, table = twomoon.run(params)
    assert list(models) == ["supervised only", "pseudo-labelling", "Meta Pseudo Labels (student)"]
    assert table["method"].tolist() == list(models)
    accs = table["accuracy on all points (%)"]
    assert accs.between(0, 100).all()
    assert (accs > 60).all(), "every learner should beat chance clearly on two moons"
    assert (table["labelled points"] == 2 * params["twomoon_labels_per_class"]).all()
    for name, model in models.items():  # the table's accuracy is the model's accuracy on all points
        with torch.no_grad():
            acc = (model(data.x).argmax(1) == data.y).float().mean().item()
        assert accs[table["method"] == name].item() == pytest.approx(100 * acc, abs=0.05)
    again = twomoon.run(params)[2]
    assert again["accuracy on all points (%)"].tolist() == accs.tolist()  # seeded


def test_seed_runs_repeat_the_experiment_on_new_draws():
    params = {**P.load("03_semi_supervised", "smoke"), "twomoon_seeds": 3, "twomoon_steps": 50}
    runs = twomoon.seed_runs(params)
    assert runs["methods"].tolist() == ["supervised only", "pseudo-labelling", "Meta Pseudo Labels (student)"]
    assert runs["seeds"].tolist() == [params["seed"], params["seed"] + 1, params["seed"] + 2]
    n = params["twomoon_samples"]
    assert runs["correct"].shape == (3, 3, n) and runs["accuracy"].shape == (3, 3)
    assert runs["accuracy"] == pytest.approx(runs["correct"].mean(-1))
    first = twomoon.run(params)[2]["accuracy on all points (%)"].to_numpy()
    assert 100 * runs["accuracy"][:, 0] == pytest.approx(first, abs=0.05)  # seed 0 is the figure's run
    assert not (runs["correct"][:, 0] == runs["correct"][:, 1]).all()        # another draw


def test_seed_runs_reuse_the_figures_run_for_the_first_seed(monkeypatch):
    params = {**P.load("03_semi_supervised", "smoke"), "twomoon_seeds": 2, "twomoon_steps": 50}
    first = twomoon.run(params)
    calls = []
    real = twomoon.run
    monkeypatch.setattr(twomoon, "run", lambda p: calls.append(p["seed"]) or real(p))
    runs = twomoon.seed_runs(params, first=first)
    assert calls == [params["seed"] + 1]  # only the second seed is trained
    assert 100 * runs["accuracy"][:, 0] == pytest.approx(first[2]["accuracy on all points (%)"].to_numpy(), abs=0.05)
