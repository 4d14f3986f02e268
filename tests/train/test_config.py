"""Config sections validate once, then build their object."""
import dataclasses
import re

import pytest

from scalenas.config import validate_section
from scalenas.errors import ScaleNASError
from scalenas.space import SearchSpace
from scalenas.train.config import RunConfig, SamplerCfg, SpaceCfg
from scalenas.train.samplers import GroupedSampler, SandwichSampler, UniformSampler


@pytest.fixture
def tiny(tiny_space_cfg) -> SearchSpace:
    return SearchSpace.from_dict(dict(tiny_space_cfg))


def test_space_section_is_the_search_space(tiny):
    assert list(SpaceCfg.model_fields) == [f.name for f in dataclasses.fields(SearchSpace)]
    assert SpaceCfg().model_dump() == SearchSpace().to_dict()
    cfg = validate_section(RunConfig, {"space": tiny.to_dict()})
    assert cfg.space.depth_choices == [1, 2] and cfg.space.build() == tiny


@pytest.mark.parametrize("space, message", [
    ({"modules_per_stage": [1, 1]}, "space.modules_per_stage: expected three positive integers"),
    ({"width": 0}, "space: width, stem_channels and stage1_blocks must be positive"),
    ({"depth_choice": [1]}, "space.depth_choice: unknown key (did you mean 'depth_choices'?)"),
    ({"fuse_upsample": "cubic"}, "space.fuse_upsample: Input should be 'nearest' or 'bilinear'"),
])
def test_a_bad_space_is_refused_by_the_config(space, message):
    with pytest.raises(ScaleNASError, match=re.escape(message)):
        validate_section(RunConfig, {"space": space})


def test_sampler_section_builds_its_sampler(tiny):
    grouped = SamplerCfg(kind="grouped", fusion_options=[0.5], sandwich=False, restart_every_epoch=True)
    s = grouped.build(tiny, seed=3, pose_rule=True, steps_per_epoch=7)
    assert type(s) is GroupedSampler and s.seed == 3 and s.pose_rule
    assert (s.fusion_options, s.depth_options, s.sandwich, s.steps_per_cycle) == ([0.5], [[1, 2]], False, 7)
    assert grouped.model_copy(update={"restart_every_epoch": False}).build(tiny, 0, False, 7).steps_per_cycle is None
    u = SamplerCfg(kind="uniform", fusion_prob=0.3).build(tiny, 0, False, 7)
    assert type(u) is UniformSampler and u.fusion_prob == 0.3
    w = SamplerCfg(kind="sandwich", fusion_prob=0.4, num_random=3).build(tiny, 0, False, 7)
    assert type(w) is SandwichSampler and (w.fusion_prob, w.num_random) == (0.4, 3)


def test_an_unknown_sampler_kind_names_the_choices():
    with pytest.raises(ScaleNASError, match=r"^sampler.kind: unknown sampler 'sandwhich'; choose one of fixed, "
                                            r"grouped, sandwich, uniform \(did you mean 'sandwich'\?\)$"):
        validate_section(RunConfig, {"sampler": {"kind": "sandwhich"}})


def test_a_recipe_run_without_the_papers_start_warns_in_one_line_each():
    from scalenas.train.config import reproduction_warnings

    base = {"task": {"name": "synthetic-regression"},
            "model": {"paper_pretrained": "ImageNet HRNet-W32"},
            "train": {"distill": {"teacher": "largest", "paper_teacher": "the W32 teacher"}}}
    warn = reproduction_warnings(validate_section(RunConfig, base))
    assert warn == ["warning: model.pretrained is not set; the paper starts from ImageNet HRNet-W32: from random "
                    "initialisation the results will not match the paper",
                    "warning: train.distill.teacher is 'largest'; the paper distils from the W32 teacher: the results "
                    "will not match the paper"]
    given = {**base, "model": {**base["model"], "pretrained": "w.pt"},
             "train": {"distill": {"teacher": "t.pt", "paper_teacher": "the W32 teacher"}}}
    assert reproduction_warnings(validate_section(RunConfig, given)) == []
    assert reproduction_warnings(validate_section(RunConfig, {"task": {"name": "synthetic-regression"}})) == []
