"""The pieces the native models share: `init_weights` and `RMSNorm`."""

import torch
from torch import nn

from tadllm.models.common import RMSNorm, init_weights


def test_init_weights_per_module_kind():
    torch.manual_seed(0)
    linear, embedding, norm = nn.Linear(64, 64), nn.Embedding(50, 64, padding_idx=3), RMSNorm(64, 1e-6)
    norm.weight.data.fill_(2.0)
    for module in (linear, embedding, norm):
        init_weights(module, std=0.5)
    assert torch.all(linear.bias == 0)
    assert abs(linear.weight.std().item() - 0.5) < 0.05
    assert torch.all(embedding.weight[3] == 0) and embedding.weight[4].abs().sum() > 0
    assert torch.all(norm.weight == 1)


def test_init_weights_leaves_other_modules_alone():
    layer = nn.LayerNorm(8)
    layer.weight.data.fill_(3.0)
    init_weights(layer, std=0.02)
    assert torch.all(layer.weight == 3.0)


def test_rms_norm_is_fp32_and_cast_back():
    x = torch.randn(2, 5, 16, dtype=torch.bfloat16)
    out = RMSNorm(16, 1e-6).to(torch.bfloat16)(x)
    ref = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), ref, atol=1e-2, rtol=1e-2)
