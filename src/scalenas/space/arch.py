"""The architecture value type.

An :class:`Arch` is one subnet of the ScaleNAS space (method §3): for every searchable module, the
depth of each branch and, for each branch ``i`` and each active block step ``s < depth[i]``, the set
of input branches fused into ``i`` after that step (one bit per input branch; the self bit is 1).

Only active steps are stored, so the representation is canonical: two equal subnets have equal
values, equal JSON and equal hashes. Bits are kept as strings such as ``"101"`` (input-branch order
0..nb-1), matching the notation of the method document.
"""
from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from scalenas.errors import ScaleNASError
from scalenas.utils.io import read_json

ARCH_FORMAT = "scalenas.arch/1"
#: the ``hrnas`` family's arch (``space/hrnas.py``); named here so that ScaleNAS loaders can refuse it by name
HRNAS_ARCH_FORMAT = "scalenas.hrnas-arch/1"


def _bits_to_str(bits: Any, where: str) -> str:
    if isinstance(bits, str):
        s = bits
    else:
        try:
            s = "".join(str(int(b)) for b in bits)
        except (TypeError, ValueError) as e:
            raise ScaleNASError(f"{where}: fusion mask must be a bit string or a list of 0/1, got {bits!r}") from e
    if not s or any(c not in "01" for c in s):
        raise ScaleNASError(f"{where}: fusion mask must contain only 0 and 1, got {bits!r}")
    return s


def _reject_unknown(d: dict, allowed: tuple[str, ...], where: str) -> None:
    """Arch JSON is strict like configs: a misspelt key is an error, not silently ignored."""
    for key in d:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            raise ScaleNASError(f"{where}: unknown key {key!r}{hint}")



def canonical_json(d: dict, indent: int | None = None) -> str:
    """An arch's JSON: sorted keys, no spaces (the canonical form that its hash reads) unless ``indent``."""
    if indent is None:
        return json.dumps(d, sort_keys=True, separators=(",", ":"))
    return json.dumps(d, sort_keys=True, indent=indent)


def parse_json(s: str, where: str):
    """An arch's JSON text as Python data; invalid JSON is one error naming ``where``."""
    try:
        return json.loads(s)
    except json.JSONDecodeError as e:
        raise ScaleNASError(f"{where}: invalid JSON ({e})") from e


def short_hash(canonical: str) -> str:
    """A stable short hash of an arch: the first 10 hex digits of SHA-256 of its canonical JSON."""
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]

@dataclass(frozen=True)
class ModuleArch:
    """One searchable module: ``depth[i]`` blocks on branch i, ``fuse[i][s]`` the inputs of branch i after step s."""

    depth: tuple[int, ...]
    fuse: tuple[tuple[str, ...], ...]

    @property
    def num_branches(self) -> int:
        return len(self.depth)

    @property
    def num_steps(self) -> int:
        return max(self.depth)

    def inputs(self, out_branch: int, step: int) -> tuple[int, ...]:
        """Input branches other than ``out_branch`` fused into it after ``step`` (empty once the branch has
        finished)."""
        if step >= self.depth[out_branch]:
            return ()
        bits = self.fuse[out_branch][step]
        return tuple(k for k, b in enumerate(bits) if b == "1" and k != out_branch)

    def num_edges(self) -> int:
        return sum(len(self.inputs(j, s)) for j in range(self.num_branches) for s in range(self.depth[j]))

    def to_dict(self) -> dict:
        return {"depth": list(self.depth), "fuse": [list(f) for f in self.fuse]}

    @staticmethod
    def from_dict(d: Any, where: str = "module") -> "ModuleArch":
        if isinstance(d, dict):
            _reject_unknown(d, ("depth", "fuse"), where)
        if not isinstance(d, dict) or "depth" not in d or "fuse" not in d:
            raise ScaleNASError(f"{where}: expected an object with keys 'depth' and 'fuse', got {type(d).__name__}")
        try:
            depth = tuple(int(x) for x in d["depth"])
        except (TypeError, ValueError) as e:
            raise ScaleNASError(f"{where}.depth: expected a list of integers, got {d['depth']!r}") from e
        fuse_in = d["fuse"]
        if not isinstance(fuse_in, (list, tuple)):
            raise ScaleNASError(f"{where}.fuse: expected a list per branch, got {type(fuse_in).__name__}")
        fuse = []
        for i, steps in enumerate(fuse_in):
            if isinstance(steps, str) or not isinstance(steps, (list, tuple)):
                raise ScaleNASError(f"{where} branch {i}: fuse must be a list of per-step masks, got {steps!r}")
            fuse.append(tuple(_bits_to_str(b, f"{where} branch {i} step {s}") for s, b in enumerate(steps)))
        return ModuleArch(depth=depth, fuse=tuple(fuse))


@dataclass(frozen=True)
class Arch:
    """A subnet: one :class:`ModuleArch` per searchable module (M0..M7 in the paper's space)."""

    modules: tuple[ModuleArch, ...]

    # ---- derived figures -------------------------------------------------------------------
    @property
    def num_modules(self) -> int:
        return len(self.modules)

    def depths(self) -> list[tuple[int, ...]]:
        return [m.depth for m in self.modules]

    def num_blocks(self) -> int:
        return sum(sum(m.depth) for m in self.modules)

    def num_edges(self) -> int:
        """Active cross-branch fusion edges, summed over modules and steps."""
        return sum(m.num_edges() for m in self.modules)

    def depth_string(self) -> str:
        """E.g. ``34 | 334 443 443 443 | 3433 3444 3433`` (stages separated by ``|``)."""
        out, prev = [], None
        for m in self.modules:
            s = "".join(str(d) for d in m.depth)
            if prev is not None and m.num_branches != prev:
                out.append("|")
            out.append(s)
            prev = m.num_branches
        return " ".join(out)

    # ---- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": ARCH_FORMAT, "modules": [m.to_dict() for m in self.modules]}

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON (sorted keys, no spaces) unless ``indent`` is given."""
        return canonical_json(self.to_dict(), indent)

    @staticmethod
    def from_dict(d: Any, where: str = "arch") -> "Arch":
        if isinstance(d, dict) and d.get("format") == HRNAS_ARCH_FORMAT:
            raise ScaleNASError(f"{where}: an hrnas-family arch ({HRNAS_ARCH_FORMAT!r}); this needs a ScaleNAS arch "
                                f"({ARCH_FORMAT!r})")
        if isinstance(d, dict):
            _reject_unknown(d, ("format", "modules"), where)
        if isinstance(d, dict) and "modules" in d:
            fmt = d.get("format", ARCH_FORMAT)
            if fmt != ARCH_FORMAT:
                raise ScaleNASError(f"{where}: unknown arch format {fmt!r} (expected {ARCH_FORMAT!r})")
            mods = d["modules"]
        elif isinstance(d, (list, tuple)):
            mods = d
        else:
            raise ScaleNASError(f"{where}: expected an object with key 'modules' or a list of modules")
        if not isinstance(mods, (list, tuple)) or not mods:
            raise ScaleNASError(f"{where}.modules: expected a non-empty list of modules")
        return Arch(tuple(ModuleArch.from_dict(m, f"{where} module M{i}") for i, m in enumerate(mods)))

    @staticmethod
    def from_json(s: str, where: str = "arch") -> "Arch":
        return Arch.from_dict(parse_json(s, where), where)

    @staticmethod
    def load(path: str) -> "Arch":
        d = read_json(path, "arch file")
        if isinstance(d, dict) and "arch" in d and "modules" not in d:  # a model.json, preset or `archs` file
            d = d["arch"]
        elif isinstance(d, dict) and "origin" in d:
            # ``search pick -o`` records where the arch came from beside it; deploy reads it, the arch does not
            d = {k: v for k, v in d.items() if k != "origin"}
        return Arch.from_dict(d, where=str(path))

    @property
    def hash(self) -> str:
        """A stable short hash: the first 10 hex digits of SHA-256 of the canonical JSON."""
        return short_hash(self.to_json())

    def __str__(self) -> str:
        return f"Arch({self.hash}: {self.depth_string()}, {self.num_edges()} edges)"


def make_module(depth: Sequence[int], fuse: Iterable[Iterable[Any]]) -> ModuleArch:
    return ModuleArch.from_dict({"depth": list(depth), "fuse": [list(f) for f in fuse]})
