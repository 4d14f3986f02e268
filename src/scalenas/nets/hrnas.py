"""The ``hrnas`` family's modules: the multi-kernel inverted-residual block, the network, the shrink step.

Block (HR-NAS's ``InvertedResidualChannels``, read from ``models/mobilenet_base.py``): one path per
kernel size k, each ``1x1 expand -> BN -> ReLU -> kxk depthwise (stride) -> BN -> ReLU -> 1x1
project``; the paths' projections are **summed**, then one shared BN, then the shortcut is added
(identity when stride 1 and cin == cout, else a 1x1 conv grouped by gcd(cin, cout), with the stride).
A path with 0 hidden channels does not exist; a block with no path is its shortcut alone. Where the
space has ``transformer_tokens``, the parallel blocks also add HR-NAS's lightweight transformer
(``models/transformer.py``) of the arch's tokens to their shortcut (:class:`TokenTransformer`).

Network (``models/hrnet.py``): stem (3x3 s2 conv-BN-ReLU twice), then per stage a fuse module
(output branch i = ReLU(sum of its neighbour edges), each edge a block; an up edge runs at the
input's resolution and is upsampled, nearest; a new branch is a stride-2 block on the fused branch
above) and a parallel module (blocks per branch). Our heads read the last stage's branches.

Shrink (HR-NAS's ``train.py:shrink_model``): HR-NAS scores hidden channels by the gamma of the BN
after the depthwise conv and removes those with small |gamma|. With gamma = 0 a channel still emits
the constant ``ReLU(beta)``, which its projection turns into a per-output-channel constant
``W_proj . ReLU(beta)`` before the shared BN; :func:`shrink` folds that constant into the shared BN's
running mean, so removing gamma = 0 channels is exact whatever beta is (in eval mode; in training
mode the BN's batch mean absorbs a constant anyway). A block that loses every path is left as its
shortcut, as in HR-NAS (the shared BN's constant output is then dropped).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scalenas.nets.blocks import init_weights
from scalenas.nets.heads import build_head
from scalenas.nets.scalenet import check_input
from scalenas.space.heads import HeadSpec
from scalenas.space.hrnas import BlockArch, HRNASArch, HRNASSpace, Slot
from scalenas.space.hrnas_profile import TOKEN_DIM, TOKEN_GRID, channel_macs, level_pixels, token_macs


def conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, momentum: float = 0.1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout, momentum=momentum), nn.ReLU(inplace=True))


class IRPath(nn.Module):
    """One kernel path: expand (1x1) -> dw (kxk, stride) -> project (1x1, no BN: the block's BN follows the sum)."""

    def __init__(self, cin: int, hidden: int, cout: int, k: int, stride: int, momentum: float = 0.1):
        super().__init__()
        self.expand = conv_bn_relu(cin, hidden, 1, momentum=momentum)
        self.dw = conv_bn_relu(hidden, hidden, k, stride, groups=hidden, momentum=momentum)
        self.project = nn.Conv2d(hidden, cout, 1, bias=False)

    @property
    def dw_bn(self) -> nn.BatchNorm2d:
        """The BN whose gamma scores the hidden channels (HR-NAS's ``get_depthwise_bn``)."""
        return self.dw[1]

    def forward(self, x):
        return self.project(self.dw(self.expand(x)))


class _Attention(nn.Module):
    """Single-head attention, q/k/v/out projections d x d without bias (as HR-NAS's ``nn.MultiheadAttention``)."""

    def __init__(self, d: int):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.scale = d ** -0.5

    def forward(self, query, source):  # (B, Lq, d), (B, Ls, d)
        w = torch.softmax(self.q(query) @ self.k(source).transpose(1, 2) * self.scale, dim=-1)  # (B, Lq, Ls)
        return self.out(w @ self.v(source))


class _TokenLayer(nn.Module):
    """A post-norm transformer layer: ``x = LN(base + attn(query, source)); x = LN(x + FFN(x))``. The
    encoder passes (tokens, tokens, tokens); HR-NAS's decoder passes (queries, memory) with base = memory."""

    def __init__(self, d: int, dropout: float = 0.1):
        super().__init__()
        self.attn = _Attention(d)
        self.ffn = nn.Sequential(nn.Linear(d, d, bias=False), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(d, d, bias=False))
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, base, query, source):
        x = self.norm1(base + self.drop(self.attn(query, source)))
        return self.norm2(x + self.drop(self.ffn(x)))


class TokenTransformer(nn.Module):
    """HR-NAS's lightweight transformer (``models/transformer.py`` defaults): the map resized to 8x8 plus 2
    position channels, a 1x1 conv + BN to L tokens of dimension 64, an encoder layer, a decoder layer
    with L learnt queries, a 1x1 conv + BN back to C channels, resized to the input. Its input BN's
    gamma scores the tokens. Returns the features to add (the block adds its input itself)."""

    def __init__(self, channels: int, tokens: int, momentum: float = 0.1):
        super().__init__()
        gh, gw = TOKEN_GRID
        self.input_proj = nn.Conv2d(channels + 2, tokens, 1, bias=False)
        self.input_norm = nn.BatchNorm2d(tokens, momentum=momentum)
        self.encoder, self.decoder = _TokenLayer(TOKEN_DIM), _TokenLayer(TOKEN_DIM)
        self.query = nn.Embedding(tokens, TOKEN_DIM)
        self.reverse_proj = nn.Conv2d(tokens, channels, 1, bias=False)
        self.reverse_norm = nn.BatchNorm2d(channels, momentum=momentum)
        ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float32), torch.arange(gw, dtype=torch.float32),
                                indexing="ij")
        pos = torch.stack([xs, ys])  # (2, gh, gw): x, y standardised, as HR-NAS's "points" encoding
        pos = (pos - pos.mean(dim=(1, 2), keepdim=True)) / pos.std(dim=(1, 2), unbiased=False, keepdim=True)
        self.register_buffer("pos", pos.unsqueeze(0), persistent=False)
        self.register_buffer("ids", torch.arange(tokens), persistent=False)

    def forward(self, x):
        b, _, h, w = x.shape
        f = F.interpolate(x, size=TOKEN_GRID, mode="bilinear", align_corners=False)
        f = self.input_norm(self.input_proj(torch.cat([f, self.pos.expand(b, -1, -1, -1)], 1)))  # (B, L, 8, 8)
        tokens = f.flatten(2)  # (B, L, 64)
        memory = self.encoder(tokens, tokens, tokens)
        queries = self.query(self.ids).unsqueeze(0).expand(b, -1, -1)
        out = self.decoder(memory, queries, memory).reshape(f.shape)
        f = self.reverse_norm(self.reverse_proj(out))  # (B, C, 8, 8)
        return F.interpolate(f, size=(h, w), mode="bilinear", align_corners=False)


class MultiKernelIR(nn.Module):
    """Parallel inverted-residual paths (one per kernel with hidden > 0), summed, BN, plus the shortcut;
    with ``tokens``, a :class:`TokenTransformer` beside them (HR-NAS: only on identity-shortcut blocks)."""

    def __init__(self, cin: int, cout: int, stride: int, kernel_sizes, hidden, momentum: float = 0.1,
                 tokens: int = 0):
        super().__init__()
        self.paths = nn.ModuleDict({f"k{k}": IRPath(cin, h, cout, k, stride, momentum)
                                    for k, h in zip(kernel_sizes, hidden) if h > 0})
        self.bn = nn.BatchNorm2d(cout, momentum=momentum) if len(self.paths) else None
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, groups=math.gcd(cin, cout), bias=False)
        self.transformer = TokenTransformer(cout, tokens, momentum) if tokens else None

    def forward(self, x):
        short = x if self.shortcut is None else self.shortcut(x)
        if self.transformer is not None:
            short = short + self.transformer(x)
        if self.bn is None:
            return short
        return short + self.bn(sum(p(x) for p in self.paths.values()))


def build_block(space: HRNASSpace, sl: Slot, blk: BlockArch, momentum: float = 0.1) -> MultiKernelIR:
    return MultiKernelIR(sl.cin, sl.cout, sl.stride, space.kernel_sizes, blk.hidden, momentum, blk.tokens or 0)


class FuseModule(nn.Module):
    """A stage's fuse module: branch i = ReLU(sum of its edge blocks); then each new branch, a stride-2
    block on the (activated) fused branch above it."""

    def __init__(self, space: HRNASSpace, slots: list[Slot], blocks: list[BlockArch], momentum: float = 0.1):
        super().__init__()
        self.edges = nn.ModuleList(build_block(space, sl, b, momentum) for sl, b in zip(slots, blocks))
        self.plan = [(sl.branch, sl.src, sl.new, sl.src > sl.branch) for sl in slots]

    def forward(self, xs):
        sums: dict[int, torch.Tensor] = {}
        out: list[torch.Tensor] = []
        for edge, (i, j, new, up) in zip(self.edges, self.plan):
            if new:
                if not out:
                    out = [F.relu(sums[b]) for b in sorted(sums)]
                out.append(edge(out[j]))
                continue
            y = edge(xs[j])
            if up:  # (B, C_i, H_j, W_j) -> (B, C_i, H_i, W_i)
                y = F.interpolate(y, size=xs[i].shape[-2:], mode="nearest")
            sums[i] = y if i not in sums else sums[i] + y
        return out or [F.relu(sums[b]) for b in sorted(sums)]


class ParallelModule(nn.Module):
    """A stage's blocks per branch (``nb`` branches; a branch may have none)."""

    def __init__(self, space: HRNASSpace, nb: int, slots: list[Slot], blocks: list[BlockArch],
                 momentum: float = 0.1):
        super().__init__()
        rows: list[list[nn.Module]] = [[] for _ in range(nb)]
        for sl, b in zip(slots, blocks):
            rows[sl.branch].append(build_block(space, sl, b, momentum))
        self.branches = nn.ModuleList(nn.Sequential(*r) for r in rows)

    def forward(self, xs):
        return [self.branches[i](x) if i < len(self.branches) else x for i, x in enumerate(xs)]


class HRNASNet(nn.Module):
    """A static network of the hrnas family. Outputs as ``ScaleNet`` (seg logits at 1/4, pose heatmaps)."""

    def __init__(self, space: HRNASSpace, arch: HRNASArch, head: HeadSpec | str = "seg",
                 bn_momentum: float = 0.1, init: str = "kaiming"):
        super().__init__()
        self.space, self.arch, self.head_spec = space, space.validate(arch), HeadSpec.of(head)
        self.bn_momentum = bn_momentum
        s0, s1 = space.stem
        self.stem = nn.Sequential(conv_bn_relu(3, s0, 3, 2, momentum=bn_momentum),
                                  conv_bn_relu(s0, s1, 3, 2, momentum=bn_momentum))
        pairs = list(zip(space.slots(), arch.blocks()))
        self.stages = nn.ModuleList()
        for s in range(len(space.stages)):
            fuse = [(sl, b) for sl, b in pairs if sl.stage == s and sl.kind == "fuse"]
            par = [(sl, b) for sl, b in pairs if sl.stage == s and sl.kind == "block"]
            nb = len(space.stage_channels(s))
            self.stages.append(nn.ModuleDict({
                "fuse": FuseModule(space, [x for x, _ in fuse], [y for _, y in fuse], bn_momentum),
                "parallel": ParallelModule(space, nb, [x for x, _ in par], [y for _, y in par], bn_momentum)}))
        self.head = build_head(self.head_spec, space.out_channels, bn_momentum)
        init_weights(self, init)

    def blocks(self) -> list[MultiKernelIR]:
        """The blocks in ``space.slots()`` order."""
        out: list[MultiKernelIR] = []
        for st in self.stages:
            out += list(st["fuse"].edges)
            out += [b for row in st["parallel"].branches for b in row]
        return out

    def backbone(self, x):
        xs = [self.stem(x)]
        for st in self.stages:
            xs = st["parallel"](st["fuse"](xs))
        return xs

    def forward(self, x):
        check_input(x)
        return self.head(self.backbone(x))


# ---- the shrink step ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PrunableUnit:
    """One kernel path of one block (``kernel`` k), or its transformer's tokens (``kernel`` None); the
    channels or tokens are scored by ``bn.weight`` (gamma: the BN after the depthwise conv, or the
    transformer's input BN, as HR-NAS).

    ``key`` indexes the keep masks of :func:`shrink`; ``channel_macs``: multiply-adds one channel (or
    token) costs at the input size given to :func:`prunable_units` (the weight of the FLOPs-aware L1
    penalty); ``where`` names stage, branch, block and path for messages."""

    key: str
    where: str
    slot: Slot
    kernel: int | None
    bn: nn.BatchNorm2d
    channel_macs: int

    @property
    def hidden(self) -> int:
        return self.bn.num_features


def _units_of(block: MultiKernelIR) -> list[tuple[str, nn.BatchNorm2d]]:
    out = [(name, path.dw_bn) for name, path in block.paths.items()]
    if block.transformer is not None:
        out.append(("tokens", block.transformer.input_norm))
    return out


def prunable_units(net: HRNASNet, input_hw) -> list[PrunableUnit]:
    """Every existing path (and transformer) of ``net``, in slot order, then kernel order, then tokens."""
    res = level_pixels(input_hw, net.space.num_levels)
    out = []
    for n, (sl, block) in enumerate(zip(net.space.slots(), net.blocks())):
        for name, bn in _units_of(block):
            if name == "tokens":
                out.append(PrunableUnit(f"{n}.tokens", f"{sl.where} transformer", sl, None, bn, token_macs(sl.cout)))
                continue
            k = int(name[1:])
            out.append(PrunableUnit(f"{n}.{name}", f"{sl.where} path {name}", sl, k, bn, channel_macs(sl, k, res)))
    return out


def _keep_indices(net: HRNASNet, keep: dict) -> list[dict[str, torch.Tensor]]:
    """Per block, per unit name: the indices kept (all where ``keep`` has no entry)."""
    out = []
    for n, block in enumerate(net.blocks()):
        kept = {}
        for name, bn in _units_of(block):
            mask = keep.get(f"{n}.{name}")
            if mask is None:
                kept[name] = torch.arange(bn.num_features)
                continue
            mask = torch.as_tensor(mask, dtype=torch.bool).flatten().cpu()
            if mask.numel() != bn.num_features:
                raise ValueError(f"keep[{n}.{name}]: {mask.numel()} entries for {bn.num_features} channels")
            kept[name] = mask.nonzero().flatten()
        out.append(kept)
    return out


def shrink(net: HRNASNet, keep: dict) -> HRNASNet:
    """The physically smaller network that keeps, for every unit ``key`` (:func:`prunable_units`), the
    channels (tokens) where ``keep[key]`` is true; the kept weights are copied, and each removed hidden
    channel's constant output ``W_proj . ReLU(beta)`` is folded into the block's BN running mean (exact
    for gamma = 0). Removing tokens is not exact: a token with zero features still takes a share of
    every attention softmax. ``net.arch`` of the result is the new :class:`HRNASArch`."""
    kept = _keep_indices(net, keep)
    ks = net.space.kernel_sizes
    blocks = [BlockArch(tuple(len(kp[f"k{k}"]) if f"k{k}" in kp else 0 for k in ks),
                        (len(kp["tokens"]) if "tokens" in kp else 0) if sl.transformer else None)
              for sl, kp in zip(net.space.slots(), kept)]
    arch = HRNASArch.from_blocks(net.space, blocks)
    p = next(net.parameters())
    new = HRNASNet(net.space, arch, net.head_spec, net.bn_momentum, init="none").to(device=p.device, dtype=p.dtype)
    state = _slice_tensors(net, kept, {k: v.clone() for k, v in net.state_dict().items()})
    prefix = {id(m): name for name, m in net.named_modules()}
    with torch.no_grad():
        for block, kp in zip(net.blocks(), kept):
            _fold_removed(state, prefix[id(block)], block, kp)
    new_keys = set(new.state_dict())
    new.load_state_dict({k: v for k, v in state.items() if k in new_keys})
    return new.train(net.training)


def shrink_tensors(net: HRNASNet, keep: dict, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` (named and shaped as ``net``'s parameters or buffers, e.g. an optimiser's momentum
    per parameter) sliced as :func:`shrink` slices the weights with the same ``keep``, so the state of
    the kept channels follows them. The entries of a removed path come back with 0 channels: keep the
    names the shrunk network still has."""
    return _slice_tensors(net, _keep_indices(net, keep), dict(tensors))


def _slice_tensors(net: HRNASNet, kept: list[dict[str, torch.Tensor]], state: dict) -> dict:
    """Slice, in ``state``, every present tensor of a path or transformer to the kept channels (tokens)."""
    prefix = {id(m): name for name, m in net.named_modules()}
    for block, kp in zip(net.blocks(), kept):
        pre = prefix[id(block)]
        for name in block.paths:
            p = f"{pre}.paths.{name}."
            for key in [k for k in state if k.startswith(p) and not k.endswith("num_batches_tracked")]:
                idx = kp[name].to(state[key].device)
                state[key] = state[key].index_select(1 if key.endswith("project.weight") else 0, idx)
        if "tokens" in kp:
            for suffix, dim in _TOKEN_DIMS.items():
                key = f"{pre}.transformer.{suffix}"
                if key in state:
                    state[key] = state[key].index_select(dim, kp["tokens"].to(state[key].device))
    return state


#: the transformer tensors indexed by token, and the dimension that is
_TOKEN_DIMS = {"input_proj.weight": 0, "input_norm.weight": 0, "input_norm.bias": 0, "input_norm.running_mean": 0,
               "input_norm.running_var": 0, "query.weight": 0, "reverse_proj.weight": 1}


def _fold_removed(state: dict, pre: str, block: MultiKernelIR, kept: dict[str, torch.Tensor]) -> None:
    """Fold the removed hidden channels' constant output ``W_proj . ReLU(beta)`` into the block's BN running mean."""
    shift = None
    for name, path in block.paths.items():
        drop = torch.ones(path.dw_bn.num_features, dtype=torch.bool, device=path.dw_bn.weight.device)
        drop[kept[name].to(drop.device)] = False
        if drop.any():
            c = path.project.weight[:, drop, 0, 0] @ F.relu(path.dw_bn.bias[drop])  # (cout,)
            shift = c if shift is None else shift + c
    if shift is not None and block.bn is not None:
        state[f"{pre}.bn.running_mean"] = state[f"{pre}.bn.running_mean"] - shift
