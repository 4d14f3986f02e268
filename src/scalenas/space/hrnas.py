"""The ``hrnas`` space family: HR-NAS's macro-architecture and its architecture value type.

HR-NAS (Ding et al., CVPR 2021) keeps an HRNet-like macro-architecture fixed and searches, inside
every block, how many hidden channels each of its parallel inverted-residual paths keeps (one path
per kernel size 3/5/7, expansion 4, summed). Its configs (``configs/seg_cityscapes.yml``,
``configs/keypoint_coco.yml``) define a stem of two stride-2 3x3 convs (24, 24 channels), then five
stages of 1, 2, 3, 4, 4 branches with widths (24), (18, 36), (18, 36, 72), (18, 36, 72, 144) x 2 and
1, 2/2, 2/2/3, 2/2/3/4, 2/2/3/4 blocks per branch. Each stage starts with a *fuse module* whose
edges are themselves inverted-residual blocks (HR-NAS's ``FuseModule`` with ``only_fuse_neighbor``:
output branch i reads input branches i-1, i, i+1; a new branch comes from the fused branch above it
by a stride-2 block) and whose sums pass a ReLU.

:class:`HRNASSpace` is that macro-architecture; :meth:`HRNASSpace.slots` lists every block in a fixed
order (the one source of truth for the profiler, the network and the shrink step).
:class:`HRNASArch` holds, per block slot and per kernel path, the hidden channels kept (0 = the path
is removed) and, where a block has HR-NAS's transformer, its tokens. Its JSON is canonical, tagged
``scalenas.hrnas-arch/1``, strict about keys, and validation errors name stage, branch, block, path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scalenas.errors import ScaleNASError
from scalenas.space.arch import HRNAS_ARCH_FORMAT, _reject_unknown, canonical_json, parse_json, short_hash
from scalenas.utils.io import read_json

#: HR-NAS's configs: inverted_residual_setting (blocks per branch, widths per branch) per stage
HRNAS_STAGES = (((1,), (24,)), ((2, 2), (18, 36)), ((2, 2, 3), (18, 36, 72)),
                ((2, 2, 3, 4), (18, 36, 72, 144)), ((2, 2, 3, 4), (18, 36, 72, 144)))


def make_divisible(v: float, divisor: int) -> int:
    """Round to a multiple of ``divisor`` (MobileNet's rule: never more than 10% below ``v``)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


@dataclass(frozen=True)
class Slot:
    """One inverted-residual block of the network.

    ``kind`` is ``"fuse"`` (an edge of a stage's fuse module: ``src`` -> ``branch``; ``src`` is the
    *fused* branch above for a new branch, ``new=True``) or ``"block"`` (``index``-th block of
    ``branch`` in the stage's parallel module). ``level``: resolution the block's convs run at
    (branch b runs at 1/(4*2^b)); ``out_level``: where its output goes (an up edge is upsampled).
    """

    stage: int
    kind: str
    branch: int
    index: int
    src: int
    cin: int
    cout: int
    stride: int
    in_level: int
    out_level: int
    new: bool = False
    transformer: bool = False

    @property
    def where(self) -> str:
        if self.kind == "block":
            return f"stage {self.stage} branch {self.branch} block {self.index}"
        what = "new branch" if self.new else "fuse"
        return f"stage {self.stage} {what} {self.src}->{self.branch} (branch {self.branch} block f{self.index})"

    @property
    def residual_identity(self) -> bool:
        return self.stride == 1 and self.cin == self.cout

    @property
    def residual_groups(self) -> int:
        """HR-NAS's projection shortcut: a 1x1 conv grouped by the largest common divisor of cin, cout."""
        return math.gcd(self.cin, self.cout)


@dataclass(frozen=True)
class HRNASSpace:
    """HR-NAS's macro-architecture; the defaults are its Cityscapes/COCO configs at width multiplier 1.

    ``stages``: per stage, (blocks per branch, channels per branch) before the width multiplier.
    ``transformer_tokens``: 0 = no transformer (HR-NAS's configs: ``use_transformer: False``, and its
    ``models/hrnet.py`` never passes the flag on); n > 0 gives every parallel-module block (the
    residual blocks) HR-NAS's lightweight transformer with up to n tokens (its default: 64).
    """

    stem_channels: tuple[int, int] = (24, 24)
    stages: tuple = HRNAS_STAGES
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    expand_ratio: float = 4.0
    width_mult: float = 1.0
    transformer_tokens: int = 0

    def __post_init__(self):
        st = tuple((tuple(int(b) for b in blocks), tuple(int(c) for c in ch)) for blocks, ch in self.stages)
        object.__setattr__(self, "stages", st)
        object.__setattr__(self, "stem_channels", tuple(int(c) for c in self.stem_channels))
        object.__setattr__(self, "kernel_sizes", tuple(int(k) for k in self.kernel_sizes))
        if len(self.stem_channels) != 2 or min(self.stem_channels) < 1:
            raise ScaleNASError("space.stem_channels: expected two positive integers")
        if not st or any(len(b) != len(c) or not b or min(b) < 0 or min(c) < 1 for b, c in st):
            raise ScaleNASError("space.stages: expected [blocks per branch, channels per branch] per stage, "
                                "same lengths, blocks >= 0, channels >= 1")
        if any(len(st[s][0]) < len(st[s - 1][0]) for s in range(1, len(st))):
            raise ScaleNASError("space.stages: a stage cannot have fewer branches than the one before")
        if not self.kernel_sizes or len(set(self.kernel_sizes)) != len(self.kernel_sizes) \
                or any(k < 1 or k % 2 == 0 for k in self.kernel_sizes):
            raise ScaleNASError(f"space.kernel_sizes: expected distinct odd sizes, got {list(self.kernel_sizes)}")
        if self.expand_ratio <= 0 or self.width_mult <= 0 or self.transformer_tokens < 0:
            raise ScaleNASError("space: expand_ratio and width_mult must be positive, transformer_tokens >= 0")

    # ---- structure -----------------------------------------------------------------------------
    def _ch(self, c: int) -> int:
        return c if self.width_mult == 1.0 else make_divisible(c * self.width_mult, 2)

    @property
    def stem(self) -> tuple[int, int]:
        return tuple(self._ch(c) for c in self.stem_channels)

    def stage_channels(self, s: int) -> tuple[int, ...]:
        return tuple(self._ch(c) for c in self.stages[s][1])

    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of the branches the head reads (the last stage's)."""
        return self.stage_channels(len(self.stages) - 1)

    @property
    def num_levels(self) -> int:
        return len(self.stages[-1][1])

    def max_hidden(self, cin: int) -> int:
        return int(round(cin * self.expand_ratio))

    def slots(self) -> list[Slot]:
        """Every block, in the order the arch, the network and the profiler share."""
        out: list[Slot] = []
        in_ch = (self.stem[1],)
        for s in range(len(self.stages)):
            ch = self.stage_channels(s)
            out += self._fuse_slots(s, in_ch, ch)
            for b, n in enumerate(self.stages[s][0]):
                out += [Slot(s, "block", b, i, b, ch[b], ch[b], 1, b, b, transformer=self.transformer_tokens > 0)
                        for i in range(n)]
            in_ch = ch
        return out

    def _fuse_slots(self, s: int, in_ch: tuple[int, ...], ch: tuple[int, ...]) -> list[Slot]:
        """HR-NAS's fuse module: neighbours only; up edges run at the input's level, down edges stride 2."""
        out, nin = [], len(in_ch)
        for i in range(min(nin, len(ch))):
            for n, j in enumerate(j for j in (i - 1, i, i + 1) if 0 <= j < nin):
                stride = 2 if j < i else 1
                out.append(Slot(s, "fuse", i, n, j, in_ch[j], ch[i], stride, j, max(i, j)))
        for i in range(nin, len(ch)):
            out.append(Slot(s, "fuse", i, 0, i - 1, ch[i - 1], ch[i], 2, i - 1, i, new=True))
        return out

    def slot_kind_counts(self) -> dict[str, int]:
        sl = self.slots()
        return {"fuse": sum(x.kind == "fuse" for x in sl), "block": sum(x.kind == "block" for x in sl)}

    # ---- special points, validation ---------------------------------------------------------
    def largest(self) -> "HRNASArch":
        """The supernet before shrinking: every path at full width (``round(cin x expand_ratio)``), all tokens."""
        return HRNASArch.from_blocks(self, [BlockArch(tuple(self.max_hidden(sl.cin) for _ in self.kernel_sizes),
                                                      self.transformer_tokens if sl.transformer else None)
                                            for sl in self.slots()])

    def validate(self, arch: "HRNASArch", where: str = "arch") -> "HRNASArch":
        """``arch`` unchanged if it fits this space, else a ScaleNASError naming stage, branch, block, path."""
        if not isinstance(arch, HRNASArch):
            raise ScaleNASError(f"{where}: not an hrnas architecture (format {HRNAS_ARCH_FORMAT!r})")
        self._check_shape(arch, where)
        for sl, blk in zip(self.slots(), arch.blocks()):
            self._check_block(sl, blk, where)
        return arch

    def _check_shape(self, arch: "HRNASArch", where: str) -> None:
        if len(arch.stages) != len(self.stages):
            raise ScaleNASError(f"{where}: {len(arch.stages)} stages, the space has {len(self.stages)}")
        by_stage: dict = {}
        for sl in self.slots():
            by_stage.setdefault((sl.stage, sl.kind, sl.branch), 0)
            by_stage[(sl.stage, sl.kind, sl.branch)] += 1
        for s, st in enumerate(arch.stages):
            for kind, rows in (("fuse", st.fuse), ("block", st.branches)):
                want = [by_stage.get((s, kind, b), 0) for b in range(len(self.stage_channels(s)))]
                got = [len(r) for r in rows]
                if got != want:
                    name = "fuse blocks" if kind == "fuse" else "blocks"
                    raise ScaleNASError(f"{where}: stage {s} has {got} {name} per branch, the space has {want}")

    def _check_block(self, sl: Slot, blk: "BlockArch", where: str) -> None:
        if len(blk.hidden) != len(self.kernel_sizes):
            raise ScaleNASError(f"{where} {sl.where}: {len(blk.hidden)} paths, the space has kernels "
                                f"{list(self.kernel_sizes)}")
        cap = self.max_hidden(sl.cin)
        for k, h in zip(self.kernel_sizes, blk.hidden):
            if h > cap:
                raise ScaleNASError(f"{where} {sl.where} path k{k}: {h} hidden channels, at most {cap} "
                                    f"({sl.cin} x expansion {self.expand_ratio:g})")
        if sl.transformer != (blk.tokens is not None):
            need = "needs 'tokens' (it has a transformer)" if sl.transformer else "has no transformer: no 'tokens'"
            raise ScaleNASError(f"{where} {sl.where}: the block {need}")
        if blk.tokens is not None and blk.tokens > self.transformer_tokens:
            raise ScaleNASError(f"{where} {sl.where} transformer: {blk.tokens} tokens, "
                                f"at most {self.transformer_tokens}")

    # ---- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"family": "hrnas", "stem_channels": list(self.stem_channels),
                "stages": [[list(b), list(c)] for b, c in self.stages], "kernel_sizes": list(self.kernel_sizes),
                "expand_ratio": self.expand_ratio, "width_mult": self.width_mult,
                "transformer_tokens": self.transformer_tokens}

    @staticmethod
    def from_dict(d: Any, where: str = "space") -> "HRNASSpace":
        if not isinstance(d, dict):
            raise ScaleNASError(f"{where}: expected an object")
        keys = ("family", "stem_channels", "stages", "kernel_sizes", "expand_ratio", "width_mult",
                "transformer_tokens")
        _reject_unknown(d, keys, where)
        if d.get("family", "hrnas") != "hrnas":
            raise ScaleNASError(f"{where}.family: expected 'hrnas', got {d['family']!r}")
        try:
            return HRNASSpace(**{k: v for k, v in d.items() if k != "family"})
        except (TypeError, ValueError) as e:
            raise ScaleNASError(f"{where}: {e}") from e


@dataclass(frozen=True)
class BlockArch:
    """One block: hidden channels kept per kernel path, in the space's kernel order (0 = path removed);
    ``tokens``: its transformer's tokens (0 = the transformer removed), None where the block has none."""

    hidden: tuple[int, ...]
    tokens: int | None = None

    def to_dict(self) -> dict:
        d: dict = {"hidden": list(self.hidden)}
        if self.tokens is not None:
            d["tokens"] = self.tokens
        return d

    @staticmethod
    def from_dict(d: Any, where: str) -> "BlockArch":
        if isinstance(d, (list, tuple)):
            d = {"hidden": d}
        if not isinstance(d, dict) or "hidden" not in d:
            raise ScaleNASError(f"{where}: expected an object with key 'hidden' (channels per kernel path)")
        _reject_unknown(d, ("hidden", "tokens"), where)
        if not isinstance(d["hidden"], (list, tuple)) or not d["hidden"]:
            raise ScaleNASError(f"{where}.hidden: expected a non-empty list of channel counts")
        tokens = None if d.get("tokens") is None else _count(d["tokens"], f"{where} tokens")
        return BlockArch(tuple(_count(h, f"{where} path {p}") for p, h in enumerate(d["hidden"])), tokens)


def _count(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ScaleNASError(f"{where}: expected a non-negative integer, got {v!r}")
    return v


@dataclass(frozen=True)
class StageArch:
    """``fuse[i]``: the fuse-module blocks into branch i; ``branches[i]``: the parallel blocks of branch i."""

    fuse: tuple[tuple[BlockArch, ...], ...]
    branches: tuple[tuple[BlockArch, ...], ...]

    def to_dict(self) -> dict:
        return {"fuse": [[b.to_dict() for b in row] for row in self.fuse],
                "branches": [[b.to_dict() for b in row] for row in self.branches]}

    @staticmethod
    def from_dict(d: Any, where: str) -> "StageArch":
        if not isinstance(d, dict) or "fuse" not in d or "branches" not in d:
            raise ScaleNASError(f"{where}: expected an object with keys 'fuse' and 'branches'")
        _reject_unknown(d, ("fuse", "branches"), where)
        rows = {}
        for key, label in (("fuse", "fuse into branch {} block f{}"), ("branches", "branch {} block {}")):
            if not isinstance(d[key], (list, tuple)) or any(not isinstance(r, (list, tuple)) for r in d[key]):
                raise ScaleNASError(f"{where}.{key}: expected a list of blocks per branch")
            rows[key] = tuple(tuple(BlockArch.from_dict(b, f"{where} {label.format(i, n)}") for n, b in enumerate(r))
                              for i, r in enumerate(d[key]))
        return StageArch(rows["fuse"], rows["branches"])


@dataclass(frozen=True)
class HRNASArch:
    """A network of the hrnas family: one :class:`StageArch` per stage."""

    stages: tuple[StageArch, ...]

    def blocks(self) -> list[BlockArch]:
        """All blocks in :meth:`HRNASSpace.slots` order."""
        return [b for st in self.stages for rows in (st.fuse, st.branches) for row in rows for b in row]

    @staticmethod
    def from_blocks(space: HRNASSpace, blocks: list[BlockArch]) -> "HRNASArch":
        """The arch whose blocks, in ``space.slots()`` order, are ``blocks``."""
        slots = space.slots()
        if len(blocks) != len(slots):
            raise ScaleNASError(f"arch: {len(blocks)} blocks, the space has {len(slots)}")
        stages = []
        for s in range(len(space.stages)):
            nb = len(space.stage_channels(s))
            rows = {k: [[] for _ in range(nb)] for k in ("fuse", "block")}
            for sl, b in zip(slots, blocks):
                if sl.stage == s:
                    rows[sl.kind][sl.branch].append(b)
            stages.append(StageArch(tuple(tuple(r) for r in rows["fuse"]), tuple(tuple(r) for r in rows["block"])))
        return HRNASArch(tuple(stages))

    def total_hidden(self) -> int:
        return sum(sum(b.hidden) for b in self.blocks())

    def to_dict(self) -> dict:
        return {"format": HRNAS_ARCH_FORMAT, "stages": [s.to_dict() for s in self.stages]}

    def to_json(self, indent: int | None = None) -> str:
        return canonical_json(self.to_dict(), indent)

    @staticmethod
    def from_dict(d: Any, where: str = "arch") -> "HRNASArch":
        if not isinstance(d, dict):
            raise ScaleNASError(f"{where}: expected an object with keys 'format' and 'stages'")
        _reject_unknown(d, ("format", "stages"), where)
        if d.get("format") != HRNAS_ARCH_FORMAT:
            raise ScaleNASError(f"{where}: format {d.get('format')!r} is not {HRNAS_ARCH_FORMAT!r}")
        if not isinstance(d.get("stages"), (list, tuple)) or not d["stages"]:
            raise ScaleNASError(f"{where}.stages: expected a non-empty list of stages")
        return HRNASArch(tuple(StageArch.from_dict(s, f"{where} stage {i}") for i, s in enumerate(d["stages"])))

    @staticmethod
    def from_json(s: str, where: str = "arch") -> "HRNASArch":
        return HRNASArch.from_dict(parse_json(s, where), where)

    @property
    def hash(self) -> str:
        """The first 10 hex digits of SHA-256 of the canonical JSON (as ``Arch.hash``)."""
        return short_hash(self.to_json())

    def __str__(self) -> str:
        return f"HRNASArch({self.hash}: {len(self.blocks())} blocks, {self.total_hidden()} hidden channels)"


def arch_family(d: Any) -> str:
    """``"hrnas"`` or ``"scalenas"`` for a parsed arch (or preset/model) JSON, by its format tag."""
    if isinstance(d, dict) and "arch" in d and "modules" not in d and "stages" not in d:
        d = d["arch"]
    return "hrnas" if isinstance(d, dict) and d.get("format") == HRNAS_ARCH_FORMAT else "scalenas"


def load_arch(path: str):
    """An ``Arch`` or an ``HRNASArch`` from an arch, preset or model file, told apart by the format tag."""
    from scalenas.space.arch import Arch

    d = read_json(path, "arch file")
    if arch_family(d) == "scalenas":
        return Arch.load(path)
    if "stages" not in d:
        d = d["arch"]
    return HRNASArch.from_dict({k: v for k, v in d.items() if k != "origin"}, where=str(path))
