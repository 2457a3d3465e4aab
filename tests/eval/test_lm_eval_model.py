"""The lm-eval adapter, exercised against a stub of the lm_eval API injected into sys.modules
(lm-eval itself is an optional extra and is not installed for the tests)."""

import abc
import json
import subprocess
import sys
import types

import pytest

from tadllm.eval import lm_eval_model

LM_EVAL_MODULES = ("lm_eval", "lm_eval.api", "lm_eval.api.model", "lm_eval.api.registry")


class _CacheHook:
    def __init__(self):
        self.calls = []

    def add_partial(self, attr, req, res):
        self.calls.append((attr, req, res))


def _stub_lm_eval():
    """Minimal lm_eval: `api.model.LM` (abstract base, as in lm-eval 0.4) and `api.registry.register_model`."""
    root, api = types.ModuleType("lm_eval"), types.ModuleType("lm_eval.api")
    model_mod, registry_mod = types.ModuleType("lm_eval.api.model"), types.ModuleType("lm_eval.api.registry")

    class LM(abc.ABC):
        def __init__(self):
            self._rank, self._world_size = 0, 1
            self.cache_hook = _CacheHook()

        @abc.abstractmethod
        def loglikelihood(self, requests): ...

        @abc.abstractmethod
        def loglikelihood_rolling(self, requests): ...

        @abc.abstractmethod
        def generate_until(self, requests): ...

        @classmethod
        def create_from_arg_string(cls, arg_string, additional_config=None):
            """As lm-eval: `k=v,...` with true/false/numbers converted, plus non-None additional config."""
            def convert(v):
                if v.lower() in ("true", "false"):
                    return v.lower() == "true"
                for cast in (int, float):
                    try:
                        return cast(v)
                    except ValueError:
                        pass
                return v

            args = {k: convert(v) for k, v in (kv.split("=", 1) for kv in arg_string.split(",") if kv)}
            extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
            return cls(**args, **extra)

    registry = {}

    def register_model(*names):
        def decorate(cls):
            for name in names:
                assert name not in registry, f"model named '{name}' conflicts with an existing one"
                assert issubclass(cls, LM)
                registry[name] = cls
            return cls
        return decorate

    model_mod.LM = LM
    registry_mod.MODEL_REGISTRY, registry_mod.register_model = registry, register_model
    registry_mod.get_model = registry.__getitem__
    root.api, api.model, api.registry = api, model_mod, registry_mod
    return dict(zip(LM_EVAL_MODULES, (root, api, model_mod, registry_mod)))


@pytest.fixture
def stub_lm_eval(monkeypatch):
    modules = _stub_lm_eval()
    for name, mod in modules.items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(lm_eval_model, "_REGISTERED", {})
    return modules


class Req:
    def __init__(self, context, gen_kwargs):
        self.args = (context, gen_kwargs)


def test_import_does_not_need_lm_eval():
    code = ("import sys, tadllm.eval.lm_eval_model as m; assert not any(k.startswith('lm_eval') for k in "
            "sys.modules); print(m.MODEL_NAME)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tadllm"


def test_register_without_lm_eval_says_how_to_install(monkeypatch):
    for name in LM_EVAL_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # `import lm_eval...` raises ImportError
    with pytest.raises(ImportError, match=r"pip install tadllm\[lm-eval\]"):
        lm_eval_model.register()


def test_register_is_idempotent_and_subclasses_lm(stub_lm_eval):
    cls = lm_eval_model.register()
    registry = stub_lm_eval["lm_eval.api.registry"]
    assert registry.MODEL_REGISTRY["tadllm"] is cls
    assert issubclass(cls, stub_lm_eval["lm_eval.api.model"].LM)
    assert lm_eval_model.register() is cls  # no second registration (the stub would assert)


def test_generate_until_matches_tadllm_decoding_and_honours_until(stub_lm_eval, ckpt):
    from tadllm.decoding import DecodeConfig, generate
    from tadllm.models import load_model

    cls = lm_eval_model.register()
    # model_args the way lm-eval passes them: a parsed `k=v` string plus batch_size / max_batch_size / device.
    lm = cls.create_from_arg_string(
        f"pretrained={ckpt},policy=entropy,threshold=5.0,gen_length=32,block_length=8,stop_at_eos=True,"
        f"dtype=float32,progress=false", {"batch_size": "2", "max_batch_size": None, "device": "cpu"})
    assert lm.config.threshold == 5.0 and lm.config.stop_at_eos is True and lm.batch_size == 2
    contexts = ["start 8 mul 2 add 67", "start 5 add 3", "start 40 sub 1 mul 2"]

    model, tok, family = load_model(ckpt, dtype="float32", device="cpu")
    ref = generate(model, family, [tok.encode(c, add_special_tokens=False) for c in contexts],
                   DecodeConfig(policy="entropy", threshold=5.0, gen_length=32, block_length=8, stop_at_eos=True))
    full = [tok.decode(ref.tokens[i, : int(ref.num_tokens[i])].tolist(), skip_special_tokens=True)
            for i in range(len(contexts))]

    plain = lm.generate_until([Req(c, {"until": []}) for c in contexts])
    assert plain == full
    assert lm.stats["n"] == 3 and lm.stats["nfe"] == int(ref.nfe.sum())
    assert lm.tpf == pytest.approx(int(ref.num_tokens.sum()) / int(ref.nfe.sum()))

    # Stop strings: cut at the earliest occurrence of any of them.
    stops = sorted({ch for text in full for ch in text[1:]})[:2] or ["x"]
    cut = lm.generate_until([Req(c, {"until": stops, "max_gen_toks": 32}) for c in contexts])
    for text, whole in zip(cut, full):
        positions = [whole.find(s) for s in stops if s in whole]
        assert text == whole[: min(positions)] if positions else text == whole
        assert not any(s in text for s in stops)
    inner = [ch for ch in full[0][1:] if ch.strip()]
    if inner:  # `until` as a single string
        single = lm.generate_until([Req(contexts[0], {"until": inner[0]})])
        assert single == [full[0][: full[0].find(inner[0])]]

    hook = lm.cache_hook.calls
    assert hook[0][0] == "generate_until" and hook[0][1] == (contexts[0], {"until": []}) and hook[0][2] == full[0]
    assert lm.generate_until([]) == []


def test_loglikelihood_is_not_implemented_with_a_reason(stub_lm_eval, ckpt):
    from tadllm.models import load_model

    cls = lm_eval_model.register()
    model, tok, family = load_model(ckpt, dtype="float32", device="cpu")
    lm = cls(model=model, tokenizer=tok, family=family, threshold=0.5, gen_length=32, block_length=8)
    assert lm.pretrained == str(ckpt) or lm.pretrained  # taken from the model's config
    for method in (lm.loglikelihood, lm.loglikelihood_rolling):
        with pytest.raises(NotImplementedError, match="no cheap exact log-likelihood"):
            method([Req("a", "b")])
    with pytest.raises(ValueError, match="no chat template"):
        lm.apply_chat_template([{"role": "user", "content": "hi"}])
    assert lm.chat_template() == ""
    assert isinstance(lm.tokenizer_name, str)


def test_model_args_validation(stub_lm_eval):
    cls = lm_eval_model.register()
    with pytest.raises(ValueError, match="pretrained"):
        cls(threshold=0.5)
    with pytest.raises(ValueError, match="needs a threshold"):
        cls(pretrained="x", threshold="None")
    with pytest.raises(ValueError, match="block_length"):
        cls(pretrained="x", gen_length=32, block_length=12)


def test_truncate_helper():
    assert lm_eval_model._truncate("a;b|c", [";", "|"]) == "a"
    assert lm_eval_model._truncate("a;b|c", ["|", ";"]) == "a"
    assert lm_eval_model._truncate("a;b|c", "|") == "a;b"
    assert lm_eval_model._truncate("abc", ["", "z"]) == "abc"
    assert lm_eval_model._truncate("abc", None) == "abc"
    assert json.dumps(lm_eval_model._truncate("", [";"])) == '""'
