"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""


def tiny_llada_config(**overrides):
    from tadllm.models.llada import LLaDAConfig

    kwargs = dict(d_model=32, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=64, vocab_size=48,
                  embedding_size=48, max_sequence_length=256, mask_token_id=47, eos_token_id=1,
                  pad_token_id=1, init_std=0.5)
    kwargs.update(overrides)
    return LLaDAConfig(**kwargs)
