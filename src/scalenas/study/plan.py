"""The study's units, in three waves of independent units:

A. every supernet (sampler x seed, plus the equal-compute view of samplers that train several
   subnets per step), every fidelity arch trained stand-alone (seed 0, and seeds 1..ceiling_seeds for
   the noise ceiling) and the hrnet point's other from-scratch seeds; nothing here depends on anything
   else (a stand-alone run wanted twice, e.g. hrnet at seed 1, is one unit);
B. on the trained supernets: inherited scores of the fidelity set (one unit per supernet), the
   searches (the sampler ablation: evolution, search seed 0, on every supernet; the strategy
   ablation: every strategy x search seed on grouped seed 0), and stage 5 (scores on fewer search
   images / calibration images / either half of the search split, successive halving) on grouped seed 0;
C. the best searched arch (grouped seed 0, evolution seed 0, at no more GFLOPs than hrnet) trained
   from scratch with every seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from scalenas.study.archs import fidelity_archs, gflops
from scalenas.study.config import StudyConfig
from scalenas.tasks.base import build_task
from scalenas.train.config import SamplerCfg
from scalenas.train.samplers import SAMPLERS

MAIN = "grouped-s0"  # the supernet the strategies search, and stage 5 measures


def subnets_per_step(cfg: StudyConfig, sampler: str, space, pose_rule: bool) -> int:
    """How many subnets the sampler trains at step 0 (sandwich: 2 + num_random)."""
    sc = SamplerCfg.model_validate({**cfg.sampler.model_dump(), "kind": sampler})
    return len(SAMPLERS.get(sampler).from_cfg(sc, space, 0, pose_rule, 1).archs_for(0))


@dataclass
class Plan:
    cfg: StudyConfig
    archs: list[dict] = field(default_factory=list)  # the fidelity set: name, arch (dict), hash, gflops
    supernets: list[dict] = field(default_factory=list)  # units
    input_hw: tuple = ()
    gflops_largest: float = 0.0
    search_images: int = 0

    @classmethod
    def build(cls, cfg: StudyConfig) -> "Plan":
        task = build_task(cfg.task)
        space = cfg.space.build()
        hw = tuple(cfg.search.get("input_hw") or task.input_hw)
        st = cfg.study
        archs = fidelity_archs(space, task.head, hw, st.archs, st.arch_pool, st.arch_seed)
        plan = cls(cfg, [{**a, "arch": a["arch"].to_dict()} for a in archs], [], hw)
        plan.gflops_largest = gflops(space, space.largest(task.head.pose_rule), task.head, hw)
        plan.search_images = task.num_eval_images("search")
        for s in st.samplers:
            k = subnets_per_step(cfg, s, space, task.head.pose_rule)
            for seed in range(st.seeds):
                plan.supernets.append(_supernet(f"{s}-s{seed}", s, seed, st.supernet_images, k))
                if k > 1 and st.equal_compute:
                    plan.supernets.append(_supernet(f"{s}@compute-s{seed}", s, seed, st.supernet_images // k, k))
        return plan

    # ---- the names of things --------------------------------------------------------------------
    def arch_of(self, name: str) -> dict:
        return next(a for a in self.archs if a["name"] == name)

    def standalone(self, arch: dict, seed: int) -> dict:
        key = f"standalone/{arch['hash']}-s{seed}"
        return {"key": key, "kind": "standalone",
                "params": {"key": key, "arch": arch["arch"], "seed": seed, "images": self.cfg.study.standalone_images}}

    def search(self, strategy: str, supernet: str, seed: int) -> dict:
        key = f"search/{strategy}-{supernet}-s{seed}"
        return {"key": key, "kind": "search",
                "params": {"key": key, "strategy": strategy, "supernet": f"supernet/{supernet}", "seed": seed}}

    def scores(self, name: str, supernet: str, **kw) -> dict:
        return {"key": f"scores/{name}", "kind": "scores",
                "params": {"supernet": f"supernet/{supernet}", "archs": [a["arch"] for a in self.archs], **kw}}

    # ---- the waves --------------------------------------------------------------------------------
    def wave_a(self) -> list[dict]:
        st = self.cfg.study
        hrnet = self.arch_of("hrnet")
        alone = ([self.standalone(a, s) for s in range(st.ceiling_seeds + 1) for a in self.archs]
                 + [self.standalone(hrnet, s) for s in range(1, st.seeds)])
        return list(self.supernets) + list({u["key"]: u for u in alone}.values())  # each key once

    def wave_b(self) -> list[dict]:
        st = self.cfg.study
        units = [self.scores(f"inherited-{u['params']['name']}", u["params"]["name"]) for u in self.supernets]
        units += [self.search("evolution", u["params"]["name"], 0) for u in self.supernets]
        units += [self.search(s, MAIN, seed) for s in st.strategy_names() for seed in range(st.seeds)
                  if (s, seed) != ("evolution", 0)]
        units += [self.scores(f"images-{n}", MAIN, max_images=n) for n in self.eval_image_counts()]
        units += [self.scores(f"calib-{c}", MAIN, calib_images=c) for c in self.calib_counts()]
        units += [self.scores(f"half-{i}", MAIN, max_images=n, first_image=first)
                  for i, (first, n) in enumerate(self.split_halves())]
        units.append({"key": "halving/main", "kind": "halving", "params": {
            "supernet": f"supernet/{MAIN}", "archs": [a["arch"] for a in self.archs],
            "costs": [{"gflops_2p30": a["gflops"]} for a in self.archs], "full_images": self.search_images,
            "min_images": st.halving.min_images, "eta": st.halving.eta}})
        return units

    def wave_c(self, searched: dict | None) -> list[dict]:
        if searched is None:
            return []
        return [self.standalone(searched, s) for s in range(self.cfg.study.seeds)]

    def eval_image_counts(self) -> list[int]:
        return sorted({n for n in self.cfg.study.eval_images if n < self.search_images})

    def split_halves(self) -> list[tuple[int, int]]:
        """(first image, images) of two disjoint halves of the search split (none below 2 images): the
        split-half reliability of the full evaluation."""
        n = self.search_images
        return [(0, n // 2), (n // 2, n - n // 2)] if n >= 2 else []

    def calib_counts(self) -> list[int]:
        full = int(self.cfg.search.get("calib_images", 64))
        return sorted({c for c in self.cfg.study.calib_images if c < full})


def _supernet(name: str, sampler: str, seed: int, images: int, k: int) -> dict:
    key = f"supernet/{name}"
    return {"key": key, "kind": "supernet", "params": {"key": key, "name": name, "sampler": sampler, "seed": seed,
                                                       "images": images, "subnets_per_step": k}}
