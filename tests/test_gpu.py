"""GPU-only checks (`make test-gpu`, run through the device tool): the CPU suite's key guarantees on CUDA."""

import pytest
import torch
from safetensors.torch import load_file

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def exact_matmuls():
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # the reference logits were computed in true fp32
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


def test_fixture_logits_on_cuda(llada_fixture_dir):
    from tadllm.models import load_model

    model, _, _ = load_model(llada_fixture_dir, dtype="float32", device="cuda")
    ref = load_file(llada_fixture_dir / "reference_logits.safetensors")
    with torch.no_grad():
        logits = model(ref["input_ids"].cuda()).logits.cpu()
        padded = model(ref["padded_input_ids"].cuda(), attention_mask=ref["padded_attention_mask"].cuda()).logits.cpu()
    assert (logits - ref["logits"]).abs().max() <= 1e-4
    assert (padded - ref["padded_logits"]).abs().max() <= 1e-4


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_bundled_teacher_decodes_on_cuda_in_bf16(cache):
    from tadllm.decoding import DecodeConfig, generate
    from tadllm.models import load_model
    from tadllm.testbed.quickstart import BUNDLED_TEACHER

    model, tokenizer, family = load_model(BUNDLED_TEACHER, dtype="bfloat16", device="cuda")
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in ("start 74 add 29 mul 6", "start 5 add 7 mul 3")]
    cfg = DecodeConfig(gen_length=64, block_length=32, policy="confidence", threshold=0.9, stop_at_eos=True,
                       use_cache=cache)
    out = generate(model, family, prompts, cfg)
    texts = tokenizer.batch_decode(out.tokens, skip_special_tokens=True)
    assert texts[0].startswith("74+29=103;103*6=618;") and texts[1].startswith("5+7=12;12*3=36;")
