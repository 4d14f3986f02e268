"""The search settings of a run, resolved one way for ``scalenas search`` and the demo.

Layers, later ones winning: the run's saved ``config.yaml`` section when resuming (else the
``search`` section of the training config stored in the supernet checkpoint, when no section is
given), then the given section (a YAML file's ``search:``, or a mapping), then ``KEY=VALUE``
overrides (relative to the section; ``search.`` is optional), then the strategy flag. The result
is validated once, as :class:`SearchCfg`.
"""
from __future__ import annotations

import os
from typing import Sequence

from scalenas.config import apply_overrides, deep_merge, load_config, load_yaml, validate_section
from scalenas.errors import ScaleNASError
from scalenas.search.config import SearchCfg
from scalenas.utils.weights import read_weights


def resolve_search_cfg(checkpoint: str, run_dir: str, section: str | dict | None = None,
                       overrides: Sequence[str] = (), resume: bool = False, strategy: str | None = None) -> SearchCfg:
    """``section``: a YAML config path (its ``search:`` section is used) or the section itself."""
    base: dict = {}
    saved = os.path.join(run_dir, "config.yaml")
    if resume and os.path.exists(saved):
        base = load_yaml(saved).get("search") or {}
    elif section is None:
        base = checkpoint_search_section(checkpoint)
    if isinstance(section, str):
        section = config_search_section(section)
    if section is not None:
        base = deep_merge(base, section)
    cfg = apply_overrides(base, [o[len("search."):] if o.startswith("search.") else o for o in overrides])
    if strategy:
        cfg["strategy"] = strategy
    return validate_section(SearchCfg, cfg, "search")


def config_search_section(path: str) -> dict:
    """The ``search:`` section of a YAML config (a training config works)."""
    section = load_config(path).get("search")
    if section is None:
        raise ScaleNASError(f"{path}: no 'search:' section")
    if not isinstance(section, dict):
        raise ScaleNASError(f"{path}: 'search' must be a mapping")
    return section


def checkpoint_search_section(path: str) -> dict:
    """The ``search`` section of the training config stored in a supernet checkpoint (may be empty)."""
    ck = read_weights(path, "checkpoint", mmap=True)  # mmap: only the small config is read
    if not isinstance(ck, dict):
        return {}
    return dict((ck.get("config") or {}).get("search") or {})
