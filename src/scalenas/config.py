"""Typed configs: YAML files plus dotted ``KEY=VALUE`` overrides, validated with pydantic.

Every section model forbids unknown keys, so a typo is rejected naming the key (``train.lr`` vs
``train.optimizer.lr``). The resolved config is written beside every run's outputs.
"""
from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from scalenas.errors import ScaleNASError


class Strict(BaseModel):
    """The base of every config model: an unknown key is an error naming it (with the closest known
    key), never silently ignored."""

    model_config = ConfigDict(extra="forbid")


def _fmt_loc(prefix: str, loc) -> str:
    parts = [prefix] if prefix else []
    parts += [str(x) for x in loc]
    return ".".join(parts)


def validate_section(model: type[BaseModel], data: Any, prefix: str = "") -> BaseModel:
    """Validate ``data`` against ``model``; errors name the dotted key (``task.crop_size``)."""
    if isinstance(data, model):
        return data
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            key = _fmt_loc(prefix, err["loc"])
            if err["type"] == "extra_forbidden":
                msgs.append(f"{key}: unknown key{_suggestion(model, err['loc'])}")
            else:
                msgs.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
        raise ScaleNASError("invalid config: " + "; ".join(msgs)) from None


def _suggestion(model: type[BaseModel], loc) -> str:
    """``" (did you mean 'lr'?)"`` for an unknown key at ``loc``: the closest field of the model that
    holds it (nested section models are followed; free-form ``dict`` sections give no suggestion)."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        sub = field.annotation if field is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return ""
        model = sub
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_value(text: str) -> Any:
    """``KEY=VALUE`` values are read as YAML scalars/lists: 3, 0.1, true, [2,3], null, text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides to a nested dict (creating intermediate mappings)."""
    for item in overrides or []:
        if "=" not in item:
            raise ScaleNASError(f"override {item!r}: expected KEY=VALUE, e.g. train.steps=100")
        key, val = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ScaleNASError(f"override {item!r}: empty key component")
        node = cfg
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ScaleNASError(f"override {key}: {p!r} is not a mapping")
            node = node[p]
        node[parts[-1]] = parse_value(val)
    return cfg


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str, overrides: list[str] | None = None) -> dict:
    """Read a YAML config, merge its ``_base_`` files (paths relative to it, later ones win, the file
    itself last), then apply ``KEY=VALUE`` overrides."""
    return apply_overrides(_load_with_bases(path, ()), overrides or [])


def load_run_config(model: type[BaseModel], path: str, overrides: list[str] | None = None,
                    run_dir: str | None = None) -> BaseModel:
    """What a training command reads: ``path`` with its bases and overrides, ``run_dir`` (the command's
    ``--run-dir``) over the file's, validated as ``model``."""
    data = load_config(path, overrides)
    if run_dir:
        data["run_dir"] = run_dir
    return validate_section(model, data)


def _load_with_bases(path: str, chain: tuple[str, ...]) -> dict:
    """``path`` merged over its ``_base_`` files; ``chain`` holds the files that include it, so that a
    cycle (a -> b -> a, or a file including itself) is named instead of recursing without end."""
    import os

    if os.path.realpath(path) in {os.path.realpath(c) for c in chain}:
        raise ScaleNASError(f"_base_ cycle: {' -> '.join(chain + (path,))}")
    data = load_yaml(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ScaleNASError(f"{path}: _base_ must be a file name or a list of file names, got {bases!r}")
    merged: dict = {}
    for b in bases:
        merged = deep_merge(merged, _load_with_bases(os.path.join(os.path.dirname(path), b), chain + (path,)))
    return deep_merge(merged, data)


def load_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ScaleNASError(f"{path}: cannot read config ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ScaleNASError(f"{path}: invalid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScaleNASError(f"{path}: the top level of a config must be a mapping")
    return data
