"""Optimisers: Adam steps with torch's fused kernel and SGD with foreach, both on a supernet whose weights
start training at different steps (no momentum buffer yet for the later ones), with updates equal to
torch's per-tensor loop; inactive weights stay untouched."""
import pytest
import torch

from scalenas.train.config import OptimizerCfg
from scalenas.train.optim import build_optimizer


def _params():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(4, 3)) for _ in range(3)]


def _steps(opt, params, uses):
    """One step per entry of ``uses``: gradients for the listed parameters only (the rest stay None)."""
    for step, used in enumerate(uses):
        opt.zero_grad(set_to_none=True)
        for i in used:
            params[i].grad = torch.full_like(params[i], 0.1 * (step + 1) * (i + 1))
        opt.step()


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_fast_paths_equal_the_per_tensor_loop_and_skip_unused_weights(name):
    cfg = OptimizerCfg(name=name, lr=0.01, weight_decay=1e-3)
    fast, ref = _params(), _params()
    opt = build_optimizer(fast, cfg)
    group = opt.param_groups[0]
    assert group["fused"] if name != "sgd" else group["foreach"]
    ref_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    kw = {"momentum": cfg.momentum} if name == "sgd" else {}
    ref_opt = ref_cls(ref, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False, **kw)
    untouched = fast[2].detach().clone()
    uses = [(0,), (0, 1), (1,), (0, 1)]  # weight 1 starts at step 1; weight 2 never trains
    _steps(opt, fast, uses)
    _steps(ref_opt, ref, uses)
    for a, b in zip(fast, ref):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)
    assert torch.equal(fast[2], untouched)
