"""lm-evaluation-harness adapter: evaluate tadllm parallel decoding on lm-eval's generative tasks.

lm-eval is an optional extra (``pip install tadllm[lm-eval]``) and is *not* imported when this module is
imported. ``register()`` imports it, builds the adapter class on top of ``lm_eval.api.model.LM`` and
registers it under the name ``"tadllm"``::

    import lm_eval
    from tadllm.eval.lm_eval_model import register

    register()
    lm_eval.simple_evaluate(model="tadllm",
                           model_args="pretrained=GSAI-ML/LLaDA-8B-Instruct,policy=entropy,threshold=0.5,"
                                      "gen_length=256,block_length=32",
                           tasks=["gsm8k"], batch_size=16)

or from the shell: ``python -m tadllm.eval.lm_eval_model --model tadllm --model_args ... --tasks gsm8k``
(registers, then runs lm-eval's own command line).

What is supported:

- ``generate_until``: each request's context is tokenised as is (lm-eval has already applied the chat
  template when run with ``--apply_chat_template``; ``add_bos_token=True`` prepends BOS), decoded with
  ``tadllm.decoding.generate`` using the decoding settings of ``model_args``, cut at the first stop token
  (EOS / end-of-turn) and then at the earliest of the request's ``until`` strings.
  The generation length is ``gen_length`` of ``model_args`` (a masked-diffusion canvas has a fixed size):
  a request's ``max_gen_toks`` does not change it, and the decoding temperature is the one of
  ``model_args`` (a request's ``temperature`` / ``do_sample`` are ignored, with a warning).
- ``loglikelihood`` / ``loglikelihood_rolling`` raise ``NotImplementedError`` (see ``_NO_LOGLIKELIHOOD``).
- Forward passes and tokens are counted across calls: ``stats`` (``nfe``, ``num_tokens``, ``wall_time``,
  ``n``) and ``tpf``; lm-eval does not report them, so they are logged after each ``generate_until``.
- One process only: under ``accelerate launch`` lm-eval expects the model to manage an accelerator,
  which this adapter does not do; use ``tad eval`` for multi-GPU evaluation.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

MODEL_NAME = "tadllm"
INSTALL_HINT = "lm-eval is not installed; install the optional extra: pip install tadllm[lm-eval]"
_NO_LOGLIKELIHOOD = (
    "tadllm's lm-eval model implements only generate_until. A masked-diffusion LM has no cheap exact "
    "log-likelihood: it defines p(x) only through an ELBO over masking ratios, which needs many forward "
    "passes per request (Monte-Carlo) and is a bound, not the exact value multiple-choice tasks compare. "
    "Use generative tasks (e.g. gsm8k, minerva_math, humaneval, mbpp) or a likelihood-capable backend."
)

logger = logging.getLogger(__name__)
# One registered class per lm_eval registry module (a real lm-eval asserts on a second registration).
_REGISTERED: dict[int, type] = {}

__all__ = ["MODEL_NAME", "INSTALL_HINT", "TadLLMGenerator", "register", "main"]


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "none", ""):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _opt(value, cast):
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
        return None
    return cast(value)


def _batch_size(value) -> int:
    if value is None:
        return 1
    if isinstance(value, str) and value.strip().lower().startswith("auto"):
        logger.warning("tadllm: batch_size=%s is not supported (no automatic batch size search); using 16", value)
        return 16
    size = int(value)
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {value!r}")
    return size


def _truncate(text: str, until) -> str:
    """Cut ``text`` at the earliest occurrence of any stop string (empty strings ignored)."""
    if until is None:
        return text
    stops = [until] if isinstance(until, str) else list(until)
    cut = len(text)
    for stop in stops:
        if stop:
            pos = text.find(stop)
            if pos != -1:
                cut = min(cut, pos)
    return text[:cut]


class TadLLMGenerator:
    """The adapter's logic, independent of lm-eval (``register()`` mixes it into ``lm_eval``'s ``LM``).

    ``model_args`` (all optional but ``pretrained``, strings accepted as lm-eval passes them):
    ``pretrained``, ``policy`` (default ``entropy``), ``threshold`` (0.5), ``gen_length`` (256),
    ``block_length`` (32), ``steps``, ``temperature`` (0), ``multi_block`` (False), ``block_add_threshold``
    (0.5), ``decoded_token_threshold`` (0.5), ``multi_block_reveal`` (``opened``), ``stop_at_eos`` (True), ``seed`` (0), ``batch_size`` (1),
    ``dtype`` (bf16 on CUDA, fp32 on CPU), ``device``, ``trust_remote_code``, ``mask_token_id``,
    ``tokenizer`` (a tokenizer folder when the checkpoint has none), ``add_bos_token`` (False),
    ``progress`` (True). Programmatic use may pass ``model=``, ``tokenizer=``, ``family=`` objects
    instead of ``pretrained``.
    """

    def __init__(self, pretrained: str | None = None, policy: str = "entropy", threshold=0.5,
                 gen_length=256, block_length=32, steps=None, temperature=0.0, multi_block=False,
                 block_add_threshold=0.5, decoded_token_threshold=0.5, multi_block_reveal="opened",
                 stop_at_eos=True, seed=0,
                 batch_size=1, max_batch_size=None, device=None, dtype=None, trust_remote_code=False,
                 mask_token_id=None, tokenizer=None, add_bos_token=False, progress=True,
                 model=None, family=None, **unused):
        # `max_batch_size`: lm-eval's `--max_batch_size`, passed along with `batch_size` and `device`; taken so
        # that it is not reported as unknown, and unused (every batch is `batch_size`).
        super().__init__()  # lm_eval's LM.__init__ when mixed in (rank, world size, cache hook)
        from tadllm.decoding import DecodeConfig

        if unused:
            logger.warning("tadllm: ignoring unknown model_args %s", sorted(unused))
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            logger.warning("tadllm: the lm-eval adapter runs one process; use `tad eval` under accelerate "
                           "launch for multi-GPU evaluation")
        self.config = DecodeConfig(
            gen_length=int(gen_length), block_length=int(block_length), policy=str(policy),
            steps=_opt(steps, int), threshold=_opt(threshold, float), temperature=float(temperature),
            multi_block=_as_bool(multi_block), block_add_threshold=float(block_add_threshold),
            decoded_token_threshold=float(decoded_token_threshold), multi_block_reveal=str(multi_block_reveal),
            stop_at_eos=_as_bool(stop_at_eos),
            seed=int(seed))
        self.batch_size = _batch_size(batch_size)
        self.add_bos_token = _as_bool(add_bos_token)
        self.progress = _as_bool(progress)
        if model is not None:
            if family is None or tokenizer is None or isinstance(tokenizer, str):
                raise ValueError("passing model= needs tokenizer= and family= objects too")
            self.model, self.tokenizer, self.family = model, tokenizer, family
            self.pretrained = pretrained or getattr(getattr(model, "config", None), "_name_or_path", None)
        else:
            if not pretrained:
                raise ValueError("tadllm: model_args need pretrained=<checkpoint folder or hub name>")
            from tadllm.models import load_model, load_tokenizer
            from tadllm.models.loading import default_device

            dev = default_device(_opt(device, str))
            dtype = _opt(dtype, str) or ("bf16" if dev.type == "cuda" else "float32")
            trust = _as_bool(trust_remote_code)
            self.model, self.tokenizer, self.family = load_model(
                pretrained, dtype=dtype, device=dev, trust_remote_code=trust,
                mask_token_id=_opt(mask_token_id, int))
            if isinstance(tokenizer, str) and tokenizer:
                self.tokenizer = load_tokenizer(tokenizer, trust_remote_code=trust)
            self.pretrained = str(pretrained)
        if self.tokenizer is None:
            raise ValueError(f"tadllm: {pretrained} has no tokenizer; pass tokenizer=<folder> in model_args")
        self.stats = {"n": 0, "nfe": 0, "num_tokens": 0, "wall_time": 0.0}
        self._warned: set[str] = set()

    # -- lm-eval interface -------------------------------------------------------------------------

    @property
    def tpf(self) -> float:
        """Tokens per forward pass over every generate_until call so far (NaN before the first)."""
        return self.stats["num_tokens"] / self.stats["nfe"] if self.stats["nfe"] else float("nan")

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "") or self.pretrained or "tadllm").replace("/", "__")

    def chat_template(self, chat_template=False):
        return getattr(self.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"tadllm: the tokenizer of {self.pretrained} has no chat template; "
                             f"run lm-eval without --apply_chat_template")
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(_NO_LOGLIKELIHOOD)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(_NO_LOGLIKELIHOOD)

    def _warn_once(self, key: str, msg: str, *args) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(msg, *args)

    def _check_gen_kwargs(self, gen_kwargs: dict) -> None:
        max_toks = gen_kwargs.get("max_gen_toks")
        if max_toks is not None and int(max_toks) != self.config.gen_length:
            self._warn_once("max_gen_toks", "tadllm: the task asks for max_gen_toks=%s; decoding uses "
                            "gen_length=%s from model_args", max_toks, self.config.gen_length)
        temp = gen_kwargs.get("temperature")
        if (_as_bool(gen_kwargs.get("do_sample", False)) or (temp is not None and float(temp) > 0)) and \
                float(temp or 0.0) != self.config.temperature:
            self._warn_once("temperature", "tadllm: the task asks for temperature=%s / do_sample=%s; decoding "
                            "uses temperature=%s from model_args", temp, gen_kwargs.get("do_sample"),
                            self.config.temperature)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from tqdm.auto import tqdm

        from tadllm.decoding import generate

        if not requests:
            return []
        pairs = [tuple(req.args) for req in requests]
        contexts = [p[0] for p in pairs]
        kwargs = [dict(p[1]) if len(p) > 1 and p[1] else {} for p in pairs]
        for kw in kwargs:
            self._check_gen_kwargs(kw)
        # Not tadllm.models.encode_prompt: lm-eval has formatted each context itself (its own chat template
        # step and few-shot text), and whether BOS is added is lm-eval's `add_bos_token` switch (as for its
        # HF backend), not whether tadllm applied a template.
        prompts = [list(self.tokenizer.encode(c, add_special_tokens=self.add_bos_token)) for c in contexts]
        bar = tqdm(total=len(prompts), desc="tadllm generate_until", unit="req",
                   disable=disable_tqdm or not self.progress, file=sys.stderr)
        try:
            out = generate(self.model, self.family, prompts, self.config, batch_size=self.batch_size,
                           progress=bar.update)
        finally:
            bar.close()
        results = []
        for i, (context, kw) in enumerate(zip(contexts, kwargs)):
            ids = out.tokens[i, : int(out.num_tokens[i])].tolist()
            text = _truncate(self.tokenizer.decode(ids, skip_special_tokens=True), kw.get("until"))
            results.append(text)
            hook = getattr(self, "cache_hook", None)
            if hook is not None:
                hook.add_partial("generate_until", (context, pairs[i][1] if len(pairs[i]) > 1 else {}), text)
        self.stats["n"] += len(prompts)
        self.stats["nfe"] += int(out.nfe.sum())
        self.stats["num_tokens"] += int(out.num_tokens.sum())
        self.stats["wall_time"] += float(out.wall_time)
        logger.info("tadllm: %d requests, %d forward passes, TPF %.3f (cumulative TPF %.3f)", len(prompts),
                    int(out.nfe.sum()), int(out.num_tokens.sum()) / max(int(out.nfe.sum()), 1), self.tpf)
        return results


def _import_lm_eval():
    try:
        from lm_eval.api.model import LM
        from lm_eval.api.registry import register_model
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return LM, register_model


def register() -> type:
    """Import lm-eval, register the ``"tadllm"`` model class and return it (idempotent)."""
    LM, register_model = _import_lm_eval()
    key = id(sys.modules.get("lm_eval.api.registry"))
    if key in _REGISTERED:
        return _REGISTERED[key]

    class TadLLM(TadLLMGenerator, LM):
        """lm-eval model ``tadllm``: masked-diffusion LMs decoded with tadllm's parallel decoding."""

    TadLLM.__module__ = __name__
    TadLLM.__qualname__ = "TadLLM"
    registered = register_model(MODEL_NAME)(TadLLM)
    cls = registered if isinstance(registered, type) else TadLLM
    _REGISTERED[key] = cls
    return cls


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tadllm.eval.lm_eval_model <lm-eval arguments>``: register ``tadllm``, run lm-eval's CLI."""
    register()
    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError as err:  # pragma: no cover - depends on the lm-eval version
        raise ImportError("this lm-eval version has no lm_eval.__main__.cli_evaluate; call register() and "
                          "lm_eval.simple_evaluate(model='tadllm', ...) from Python instead") from err
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":  # pragma: no cover
    main()
