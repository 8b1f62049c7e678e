import pytest
import yaml

from lib import params as P


def write(tmp_path, text):
    (tmp_path / "ch.yaml").write_text(text)
    return tmp_path


BASIC = """
defaults:
  lr: 0.1      # learning rate
  epochs: 3    # passes
  name: x      # a string
  flag: false  # a bool
profiles:
  smoke: {epochs: 1}
  quick: {}
  full: {lr: 0.2}
"""


def test_profile_overrides_defaults(tmp_path):
    p = P.load("ch", "smoke", params_dir=write(tmp_path, BASIC))
    assert p["epochs"] == 1 and p["lr"] == 0.1 and p["profile"] == "smoke" and p["chapter"] == "ch"


def test_int_is_accepted_for_float_and_converted(tmp_path):
    p = P.load("ch", "quick", {"lr": 1}, params_dir=write(tmp_path, BASIC))
    assert p["lr"] == 1.0 and isinstance(p["lr"], float)


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(P.ParamError, match=r"unknown key 'epoch'.*Valid keys: epochs, flag, lr, name"):
        P.load("ch", "quick", {"epoch": 2}, params_dir=write(tmp_path, BASIC))


def test_unknown_key_in_profile_names_file_and_profile(tmp_path):
    d = write(tmp_path, BASIC.replace("smoke: {epochs: 1}", "smoke: {epoch: 1}"))
    with pytest.raises(P.ParamError, match=r"ch.yaml profile 'smoke': unknown key 'epoch'"):
        P.load("ch", "smoke", params_dir=d)


def test_type_change_is_rejected(tmp_path):
    with pytest.raises(P.ParamError, match=r"'epochs' expects int .* got str"):
        P.load("ch", "quick", {"epochs": "three"}, params_dir=write(tmp_path, BASIC))
    with pytest.raises(P.ParamError, match=r"'flag' expects bool"):
        P.load("ch", "quick", {"flag": 1}, params_dir=write(tmp_path, BASIC))


def test_unknown_profile_and_missing_file(tmp_path):
    d = write(tmp_path, BASIC)
    with pytest.raises(P.ParamError, match=r"unknown profile 'huge'.*\['full', 'quick', 'smoke'\]"):
        P.load("ch", "huge", params_dir=d)
    with pytest.raises(P.ParamError, match=r"no params file .*nope.yaml; known chapters: \['ch'\]"):
        P.load("nope", "quick", params_dir=d)


def test_auto_profile_is_quick_without_cuda(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert P.load("ch", "auto", params_dir=write(tmp_path, BASIC))["profile"] == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # on a GPU, the choice run_all.sh makes (lib.profiles.auto_choice) from the recorded projection
    for name, profile in (("NVIDIA H100 80GB HBM3", "full"), ("Tesla T4", "colab")):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, name=name: name)
        assert P.resolve_profile("auto") == profile


def test_every_profile_of_every_params_file_loads():
    files = sorted(P.PARAMS_DIR.glob("*.yaml"))
    assert files, "no params files"
    for f in files:
        doc = yaml.safe_load(f.read_text())
        assert set(doc["profiles"]) == set(P.PROFILES), f"{f.name} does not define every profile"
        for profile in P.PROFILES:
            p = P.load(f.stem, profile)
            overrides = doc["profiles"][profile] or {}
            for key, value in overrides.items():  # every override took effect
                expected = float(value) if isinstance(doc["defaults"][key], float) else value
                assert p[key] == expected, (f.name, profile, key)
            untouched = set(doc["defaults"]) - set(overrides)
            assert all(p[k] == doc["defaults"][k] for k in untouched), (f.name, profile)
            assert (p["profile"], p["chapter"]) == (profile, f.stem)


def test_params_hash_is_stable_and_sensitive():
    a = {"lr": 0.1, "epochs": 3}
    assert P.params_hash(a) == P.params_hash(dict(reversed(list(a.items()))))
    assert P.params_hash(a) != P.params_hash({**a, "lr": 0.2})


def test_auto_keys_also_take_true_or_false(tmp_path):
    text = BASIC.replace("  flag: false  # a bool\n", "  flag: false  # a bool\n  compile: auto  # c\n  amp: auto  # a\n"
                         "  device: auto  # d\n").replace("full: {lr: 0.2}", "full: {compile: true, amp: off}")
    d = write(tmp_path, text)
    p = P.load("ch", "full", params_dir=d)
    assert p["compile"] is True and p["amp"] is False  # YAML reads a bare `off` as false
    with pytest.raises(P.ParamError, match=r"'device' expects str"):
        P.load("ch", "quick", {"device": True}, params_dir=d)
