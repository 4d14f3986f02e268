"""The weight-sharing supernet (method §4), with Once-for-All's small surface:
``set_active(arch)`` chooses the subnet the forward pass runs; ``extract(arch)`` returns it as a
standalone :class:`ScaleNet` with the supernet's weights and BN statistics.

Every block slot (module, branch, slot) and every fusion edge (module, step, out, in) exists once.
A subnet with depth d on a branch uses the first d slots (prefix sharing); edges are not tied across
steps. Stem, stage 1, transitions and head are shared by all. Inactive blocks and edges are skipped,
so they cost nothing and get no gradient (``grad`` stays ``None``); so are the active arch's dead ones
(``space.liveness``), which the extracted net does not contain. One set of BN layers serves every
subnet; recalibrate it before evaluating a subnet (``scalenas.search.calibrate``).
"""
from __future__ import annotations

import torch

from scalenas.errors import ScaleNASError
from scalenas.nets.modules import ModulePlan
from scalenas.nets.scalenet import ScaleNet, _Body
from scalenas.space.arch import Arch
from scalenas.space.heads import HeadSpec
from scalenas.space.liveness import liveness
from scalenas.space.space import SearchSpace


class SuperScaleNet(_Body):
    def __init__(self, space: SearchSpace, head: HeadSpec | str = "seg", bn_momentum: float = 0.1,
                 init: str = "kaiming"):
        super().__init__(space, HeadSpec.of(head), None, bn_momentum, init)
        self.bn_momentum = bn_momentum
        self.active: Arch | None = None
        self._plans: dict[str, tuple[ModulePlan, ...]] = {}
        self.set_active(space.largest(pose_rule=self.head_spec.pose_rule))

    def set_active(self, arch: Arch) -> "SuperScaleNet":
        """Make ``arch`` the subnet that ``forward`` runs. Allocates no tensors or modules."""
        plans = self._plans.get(arch.hash)
        if plans is None:
            self.space.validate(arch, pose_rule=self.head_spec.pose_rule)
            live = liveness(arch, self.head_spec)
            plans = tuple(ModulePlan.compile(ma, lv) for ma, lv in zip(arch.modules, live))
            if len(self._plans) > 4096:  # plans are tiny, but a long search should not grow without bound
                self._plans.clear()
            self._plans[arch.hash] = plans
        for stage, plan in zip(self.stages, plans):
            stage.plan = plan
        self.active = arch
        return self

    def extract(self, arch: Arch | None = None) -> ScaleNet:
        """A standalone ScaleNet for ``arch`` (default: the active one) with this supernet's weights and BN
        statistics."""
        arch = arch or self.active
        with torch.device("meta"):
            net = ScaleNet(self.space, arch, self.head_spec, bn_momentum=self.bn_momentum, init="none")
        sd = self.state_dict()
        wanted = net.state_dict(keep_vars=False)
        missing = [k for k in wanted if k not in sd]
        if missing:
            raise ScaleNASError(f"extract: the supernet has no tensor {missing[0]!r} for arch {arch.hash}")
        sub = {k: sd[k].detach().clone() for k in wanted}
        net.load_state_dict(sub, strict=True, assign=True)
        dev = next(self.parameters()).device
        return net.to(dev).train(self.training)

