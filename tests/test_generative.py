"""Chapter 2 models: forward noising, losses that fall, samplers, exact GAN resume, nearest neighbours."""
import pytest
import torch

from lib import augment, batches
from lib import data as D
from lib import params as P
from lib.chapters import generative
from lib.evaluate import retrieval
from lib.methods import dcgan as dcgan_method
from lib.methods import ddpm as ddpm_method
from lib.methods import vae as vae_method
from lib.models import dcgan as dcgan_nets
from lib.models import unet as unet_nets
from lib.models import vae as vae_nets
from lib.train import fit, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_batch(n=16, seed=0):
    ds = D.make_synthetic(n, 4, seed=seed)
    return augment.to_signed(ds.train_x[:n]), ds.train_y[:n]


def tiny_unet():
    torch.manual_seed(0)
    return unet_nets.build_unet(channels=8, multipliers=(1, 2), layers_per_block=1, attention_resolutions=(16,), dropout=0.0)


def test_linear_betas_match_ho_et_al_and_diffusers():
    from diffusers import DDPMScheduler

    betas = ddpm_method.linear_betas(1000, 1e-4, 0.02)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    ref = DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    torch.testing.assert_close(ddpm_method.alphas_cumprod(betas).float(), ref.alphas_cumprod, rtol=1e-5, atol=1e-7)


def test_forward_noising_matches_its_closed_form():
    abar = ddpm_method.alphas_cumprod(ddpm_method.linear_betas())
    x0 = torch.linspace(-1, 1, 3 * 4 * 4).view(1, 3, 4, 4)
    t = torch.tensor([0, 10, 500, 999])
    noise = torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    xt = ddpm_method.q_sample(x0.expand(4, -1, -1, -1), t, noise, abar)
    a = abar[t].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(xt, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    # distribution: mean sqrt(abar_t) x0 and variance 1 - abar_t (empirically, many noise draws at t = 300)
    n = 20000
    eps = torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    samples = ddpm_method.q_sample(x0.expand(n, -1, -1, -1), torch.full((n,), 300), eps, abar)
    a300 = abar[300].item()
    torch.testing.assert_close(samples.mean(0), a300 ** 0.5 * x0[0], atol=0.03, rtol=0)
    torch.testing.assert_close(samples.var(0), torch.full((3, 4, 4), 1 - a300), atol=0.03, rtol=0)


def test_ho_cifar_unet_has_35_7m_parameters():
    unet = unet_nets.build_unet()  # the defaults are Ho et al.'s CIFAR-10 configuration
    assert sum(p.numel() for p in unet.parameters()) == 35_746_307


def losses(method, batch, steps, key="loss"):
    return [method.train_step(batch)[key].item() for _ in range(steps)]


def test_vae_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    model = vae_nets.ConvVAE(latent=8, width=8)
    method = vae_method.VAE(model, make_optimizer(model.parameters(), name="adam", lr=3e-3))
    batch = tiny_batch(8)
    # a Bernoulli likelihood of grey levels cannot go below the pixels' own entropy: measure the excess over it
    p = ((batch[0] + 1) / 2).clamp(1e-6, 1 - 1e-6)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).sum().item() / len(p)
    ls = [v - entropy for v in losses(method, batch, 30)]
    assert min(ls) > 0 and sum(ls[-5:]) < 0.75 * sum(ls[:5])


def test_dcgan_discriminator_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    g, d = dcgan_nets.DCGANGenerator(nz=8, width=8), dcgan_nets.DCGANDiscriminator(width=8)
    dcgan_nets.dcgan_init(g), dcgan_nets.dcgan_init(d)
    method = dcgan_method.DCGAN(g, d, make_optimizer(g.parameters(), name="adam", lr=2e-4, betas=(0.5, 0.999)),
                     make_optimizer(d.parameters(), name="adam", lr=2e-3, betas=(0.5, 0.999)))
    ls = losses(method, tiny_batch(), 30, key="loss_d")
    assert sum(ls[-5:]) < 0.7 * sum(ls[:5])


def test_ddpm_loss_decreases_on_a_tiny_batch():
    unet = tiny_unet()
    method = ddpm_method.DDPM(unet, make_optimizer(unet.parameters(), name="adam", lr=3e-3), ema_decay=0.9)
    torch.manual_seed(0)
    ls = losses(method, tiny_batch(8), 60)
    assert sum(ls[-10:]) < 0.6 * sum(ls[:10])


def test_samplers_return_uint8_images_of_the_right_shape_and_are_seeded():
    torch.manual_seed(0)
    vae = vae_method.VAE(vae_nets.ConvVAE(latent=8, width=8), torch.optim.Adam([torch.zeros(1)]))
    g = dcgan_nets.DCGANGenerator(nz=8, width=8)
    gan = dcgan_method.DCGAN(g, dcgan_nets.DCGANDiscriminator(width=8), torch.optim.Adam(g.parameters()), torch.optim.Adam([torch.zeros(1)]))
    unet = tiny_unet()
    ddpm = ddpm_method.DDPM(unet, torch.optim.Adam(unet.parameters()), num_timesteps=20)
    draws = {"vae": lambda s: vae.sample(5, batch_size=2, seed=s), "dcgan": lambda s: gan.sample(5, batch_size=2, seed=s),
             "ddpm": lambda s: ddpm.sample(3, sampler="ddpm", batch_size=2, seed=s),
             "ddim": lambda s: ddpm.sample(3, sampler="ddim", steps=5, batch_size=2, seed=s)}
    for name, draw in draws.items():
        x, seconds = draw(0)
        assert x.dtype == torch.uint8 and x.shape[1:] == (3, 32, 32) and seconds > 0, name
        assert len(x) == (5 if name in ("vae", "dcgan") else 3), name
        assert int(x.max()) > int(x.min()), f"{name} samples are constant"
        assert torch.equal(x, draw(0)[0]), f"{name} sampler is not seeded"
    with pytest.raises(ValueError, match="sampler"):
        ddpm.sample(1, sampler="euler")


def make_gan(init_seed):
    torch.manual_seed(init_seed)
    g, d = dcgan_nets.DCGANGenerator(nz=8, width=8), dcgan_nets.DCGANDiscriminator(width=8)
    dcgan_nets.dcgan_init(g), dcgan_nets.dcgan_init(d)
    return dcgan_method.DCGAN(g, d, make_optimizer(g.parameters(), name="adam", lr=2e-4, betas=(0.5, 0.999)),
                   make_optimizer(d.parameters(), name="adam", lr=2e-4, betas=(0.5, 0.999)))


def test_gan_resume_restores_both_networks_and_both_optimizers_exactly(tmp_path):
    ds = D.make_synthetic(64, 4)
    loader = batches.BatchLoader(ds.train_x, ds.train_y, batch_size=16, padding=0, normalize_fn=augment.to_signed, seed=0)
    kw = dict(total_steps=12, steps_per_epoch=4, device="cpu", seed=0)
    gan = make_gan(0)
    full = fit(gan, loader.forever, ckpt_dir=tmp_path / "a", **kw)
    reference = gan.state_dict()

    part = fit(make_gan(0), loader.forever, ckpt_dir=tmp_path / "b", ckpt_every=2, stop_after=5, **kw)
    assert not part.finished
    gan2 = make_gan(123)  # different initial weights: everything must come from the checkpoint
    resumed = fit(gan2, loader.forever, ckpt_dir=tmp_path / "b", **kw)
    assert resumed.finished
    got = gan2.state_dict()
    for net in ("generator", "discriminator"):
        for k, v in reference[net].items():
            assert torch.equal(v, got[net][k]), (net, k)
    for opt in ("opt_g", "opt_d"):
        for pid, st in reference[opt]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, got[opt]["state"][pid][k]), (opt, pid, k)
    cols = ["step", "train_loss_d", "train_loss_g"]
    assert resumed.history[cols].equals(full.history[cols])


def test_nearest_neighbours_finds_an_exact_copy():
    train = torch.randint(0, 256, (250, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    samples = torch.stack([train[17], train[203]])
    idx, dist = retrieval.nearest_neighbours(samples, train, k=3, chunk=64)
    assert idx[:, 0].tolist() == [17, 203] and torch.all(dist[:, 0] == 0) and torch.all(dist[:, 1] > 0)


def test_reconstruction_splits_keep_labels_and_real_evaluation_sets():
    from lib.chapters.supervised import Splits

    torch.manual_seed(0)
    ds = D.make_synthetic(40, 20)
    splits = Splits(ds.train_x[:30], ds.train_y[:30], ds.train_x[30:], ds.train_y[30:], ds.test_x, ds.test_y, "syn")
    vae = vae_method.VAE(vae_nets.ConvVAE(latent=4, width=8), torch.optim.Adam([torch.zeros(1)]))
    rec = generative.reconstruction_splits(vae, splits, mode="reconstructions")
    both = generative.reconstruction_splits(vae, splits, mode="real+reconstructions")
    assert rec.train_x.shape == splits.train_x.shape and rec.train_x.dtype == torch.uint8
    assert torch.equal(rec.train_y, splits.train_y) and torch.equal(rec.test_x, splits.test_x)
    assert len(both.train_y) == 60 and torch.equal(both.train_x[:30], splits.train_x)
    assert len({rec.source, splits.source, both.source}) == 3


def test_generator_settings_are_the_kinds_own_keys_without_their_prefix():
    params = {"vae_lr": 1e-3, "vae_epochs": 5, "vaegan_lr": 9.0, "dcgan_lr": 2e-4, "fid_images": 10}
    assert generative.generator_settings("vae", params) == {"lr": 1e-3, "epochs": 5}
    assert generative.generator_settings("dcgan", params) == {"lr": 2e-4}
    with pytest.raises(ValueError, match="unknown generative model 'gan'"):
        generative.generator_settings("gan", params)


@pytest.mark.parametrize("profile", P.PROFILES)
def test_each_generator_trains_whole_epochs_of_its_loaders_full_batches(profile):
    """train_generator's step count is the one its snapshots and checkpoints fall on: ``epochs`` times the
    training loader's batches (the partial last batch dropped)."""
    from lib.spec import PRESENTED

    p = P.load("02_generative", profile)
    n = (p["train_subset"] or 50_000) - p["val_size"]
    images = torch.zeros(1, 3, 32, 32, dtype=torch.uint8).expand(n, -1, -1, -1)
    steps = {}
    for kind in generative.GENERATORS:
        s = generative.generator_settings(kind, p)
        loader = batches.BatchLoader(images, torch.zeros(n, dtype=torch.long), batch_size=s["batch_size"])
        steps[kind] = generative.training_steps(s, n)
        assert steps[kind] == round(s["epochs"] * len(loader)), kind
    if profile == "full":
        assert steps["ddpm"] == 150 * (45_000 // 128) == 52_650
        presented = PRESENTED["fid_setting"]["dcgan"]  # SPEC 2.4: the slide's DCGAN setting, as run
        assert (p["dcgan_lr"], p["dcgan_batch_size"], p["dcgan_epochs"]) == (
            presented["lr"], presented["batch_size"], presented["epochs"])


def test_comparison_table_says_only_what_the_slide_says():
    from lib.chapters import generative

    df = generative.comparison_table().set_index("")
    assert list(df.index) == ["characteristics", "pros", "cons"]
    assert list(df.columns) == ["VAE", "DCGAN", "DDPM"]
    assert "solves mode collapse" in df.loc["pros", "DDPM"]
    assert not df.apply(lambda col: col.str.contains("stable")).any().any()


def test_settings_put_the_slides_lr_batch_epochs_beside_ours():
    from lib.chapters import generative
    from lib.spec import PRESENTED

    for model in ("dcgan", "ddpm"):
        s = PRESENTED["fid_setting"][model]
        assert generative.presented_setting(model) == {
            "presented lr": s["lr"], "presented batch": s["batch_size"],
            "presented epochs": s["epochs"]}
    assert set(generative.presented_setting("vae").values()) == {None}
