"""Chapter parameters: one flat YAML per chapter in ``params/``, with named profiles as overrides.

A params file has two top-level keys::

    defaults:          # every key the chapter knows, with its value and a comment (unit, reason)
      epochs: 30       # passes over the training split
    profiles:          # named overrides; a profile may only set keys that ``defaults`` has
      smoke: {epochs: 1}
      quick: {...}
      colab: {...}
      full: {...}

``load("01_supervised", "quick")`` returns the defaults with the profile applied, as a plain dict.
Unknown keys and type changes fail with a message that names the file, the key and the valid keys,
because a typo in a parameter should never silently run the wrong experiment.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"
PROFILES = ("smoke", "quick", "colab", "full", "full-long")


class ParamError(ValueError):
    """A params file, profile or override that cannot be applied."""


def resolve_profile(profile: str) -> str:
    """``auto`` becomes ``quick`` without CUDA and, on a GPU, the largest profile projected to finish within
    :data:`lib.profiles.AUTO_HOURS` there (:func:`lib.profiles.auto_choice`, the choice ``run_all.sh`` makes);
    other names pass."""
    if profile != "auto":
        return profile
    import torch

    if not torch.cuda.is_available():
        return "quick"
    from .profiles import auto_choice

    return auto_choice(torch.cuda.get_device_name()).profile


def _read(path: Path) -> dict:
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ParamError(f"no params file {path}; known chapters: {known}")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParamError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("defaults"), dict):
        raise ParamError(f"{path} must have a mapping 'defaults:' (and optionally 'profiles:')")
    extra = set(doc) - {"defaults", "profiles"}
    if extra:
        raise ParamError(f"{path}: unexpected top-level keys {sorted(extra)}; expected 'defaults' "
                         "and 'profiles'")
    return doc


# keys whose default ``auto`` may also be set to true/false (YAML reads off as false)
AUTO_OR_BOOL = ("amp", "compile")


def _compatible(default: Any, value: Any, key: str = "") -> bool:
    if default is None or value is None:
        return True
    if key in AUTO_OR_BOOL and isinstance(value, (bool, str)) and isinstance(default, (bool, str)):
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float) and isinstance(value, int):
        return True
    if isinstance(default, list) and isinstance(value, list):
        return True
    return type(default) is type(value)


def apply_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any], *, where: str) -> dict:
    """Return ``base`` updated with ``overrides``; reject unknown keys and type changes."""
    out = dict(base)
    for key, value in overrides.items():
        if key not in base:
            raise ParamError(f"{where}: unknown key {key!r}. Valid keys: {', '.join(sorted(base))}")
        if not _compatible(base[key], value, key):
            raise ParamError(
                f"{where}: key {key!r} expects {type(base[key]).__name__} (default {base[key]!r}), "
                f"got {type(value).__name__} {value!r}"
            )
        out[key] = (float(value) if isinstance(base[key], float) and isinstance(value, int)
                    else value)
    return out


def load(chapter: str, profile: str = "auto", overrides: Mapping[str, Any] | None = None,
         *, params_dir: Path | str | None = None) -> dict:
    """Resolved parameters of ``chapter`` under ``profile`` (``smoke``/``quick``/``colab``/``full``/
    ``full-long``/``auto``/a custom name).

    The result carries ``profile`` (resolved) and ``chapter`` so every saved output can say what
    ran.
    """
    path = (Path(params_dir or os.environ.get("CIFAR_REPORT_PARAMS_DIR", PARAMS_DIR))
            / f"{chapter}.yaml")
    doc = _read(path)
    profile = resolve_profile(profile)
    profiles = doc.get("profiles") or {}
    if profile not in profiles:
        raise ParamError(f"{path}: unknown profile {profile!r}; this file defines "
                         f"{sorted(profiles)} (or use 'auto')")
    resolved = apply_overrides(doc["defaults"], profiles[profile] or {},
                               where=f"{path} profile {profile!r}")
    resolved = apply_overrides(resolved, overrides or {}, where="overrides")
    resolved["chapter"] = chapter
    resolved["profile"] = profile
    return resolved


def params_hash(params: Mapping[str, Any]) -> str:
    """Short stable hash of a resolved parameter dict (sorted JSON), for provenance and cache
    keys."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
