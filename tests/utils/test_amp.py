"""``train.amp`` decisions (utils.runtime.resolve_amp) on mocked GPUs: bf16 only where it is native."""
import pytest
import torch

from scalenas.utils.runtime import native_bf16, resolve_amp


@pytest.fixture
def gpu(monkeypatch):
    """``gpu(capability)``: a CUDA device of that compute capability, which torch's own check calls bf16-capable
    (it counts emulation)."""
    def make(capability):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        monkeypatch.setattr(torch.version, "hip", None)
    return make


def test_pre_ampere_gpu_is_not_bf16_and_says_fp16(gpu):
    gpu((7, 0))
    assert not native_bf16("cuda:0")
    assert resolve_amp("auto", "cuda:0") == (
        "fp16", "fp16 with a grad scaler (cuda:0 has no native bf16: compute capability 7.0 < 8.0)")
    warned = r"amp=bf16 requested but cuda:0 has no native bf16: compute capability 7.0 < 8.0; running fp16"
    with pytest.warns(RuntimeWarning, match=warned):
        assert resolve_amp("bf16", "cuda:0")[0] == "fp16"
    assert resolve_amp("none", "cuda:0") == ("none", "fp32 (train.amp none)")


def test_ampere_gpu_is_bf16(gpu):
    gpu((8, 0))
    assert resolve_amp("auto", "cuda:0") == ("bf16", "bf16 (native on cuda:0)")


def test_cpu_without_bf16_kernels_falls_back_to_fp32(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert resolve_amp("auto", "cpu") == (
        "none", "fp32 (cpu has no native bf16 convolution, which needs AVX512-BF16/AMX)")
