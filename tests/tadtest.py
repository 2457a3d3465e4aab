"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

from pathlib import Path

# Reference data vendored in the repository (tests/fixtures/README.md says what each file is).
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def require_fixture(path: Path) -> Path:
    """`path` if it is a file; otherwise the calling test fails (a missing fixture is an error, never a skip)."""
    import pytest

    if not path.is_file():
        pytest.fail(f"test fixture missing: {path} (it is part of the repository; see tests/fixtures/README.md)",
                    pytrace=False)
    return path


def tiny_llada_config(**overrides):
    from tadllm.models.llada import LLaDAConfig

    kwargs = dict(d_model=32, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=64, vocab_size=48,
                  embedding_size=48, max_sequence_length=256, mask_token_id=47, eos_token_id=1,
                  pad_token_id=1, init_std=0.5)
    kwargs.update(overrides)
    return LLaDAConfig(**kwargs)


def free_port() -> int:
    """A TCP port nobody listens on (for `accelerate launch --main_process_port`)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def decoding_cases():
    """(PROMPTS, CONFIGS): prompts of different lengths and one DecodeConfig per policy / schedule, shared by
    the decoding-loop and KV-cache tests."""
    from tadllm.decoding import DecodeConfig

    prompts = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [20, 21, 22, 23, 24, 25, 26, 27, 28], [40]]
    configs = {
        "low_confidence": DecodeConfig(gen_length=32, block_length=8),
        "two_per_step": DecodeConfig(gen_length=32, block_length=8, steps=16),
        "random": DecodeConfig(gen_length=32, block_length=8, policy="random", steps=16),
        "confidence": DecodeConfig(gen_length=32, block_length=8, policy="confidence", threshold=0.05),
        "entropy_multi": DecodeConfig(gen_length=32, block_length=8, policy="entropy", threshold=5.0,
                                      multi_block=True, block_add_threshold=0.25, decoded_token_threshold=0.5),
        "single_block": DecodeConfig(gen_length=32, block_length=32, policy="entropy", threshold=5.0),
    }
    return prompts, configs


def check_decode_accounting(out, name: str) -> None:
    """What every decoding of `decoding_cases()` must satisfy (4 prompts, gen 32): no mask left, each forward
    reveals at least one token and the last reveal step is the forward count; fixed-count configs spend
    exactly their steps."""
    import torch

    assert out.tokens.shape == (4, 32)
    assert (out.reveal_step >= 1).all()
    assert torch.equal(out.reveal_step.max(1).values, out.nfe)
    for row in out.reveal_step:
        assert set(row.tolist()) == set(range(1, int(row.max()) + 1))
    if name == "low_confidence":
        assert out.nfe.tolist() == [32] * 4
    if name in ("two_per_step", "random"):
        assert out.nfe.tolist() == [16] * 4
        assert all(torch.bincount(r)[1:].tolist() == [2] * 16 for r in out.reveal_step)


def parsed_three_ways(build_parser, base: list[str], settings: dict[str, str], tmp_path) -> list[tuple]:
    """The dataclasses a command's parser (`tadllm.config.ConfigParser`) makes of `base` plus `settings`
    (field -> text) given as flags (`--gen-length 64`), as `key=value` and in a `--config` YAML file."""
    flags = [arg for key, text in settings.items() for arg in ("--" + key.replace("_", "-"), text)]
    overrides = [f"{key}={text}" for key, text in settings.items()]
    config = tmp_path / "options.yaml"
    config.write_text("".join(f"{key}: {text}\n" for key, text in settings.items()))
    return [build_parser().parse(base + extra) for extra in (flags, overrides, ["--config", str(config)])]
