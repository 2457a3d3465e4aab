"""`arith`: the testbed's synthetic, verifiable chain-of-thought arithmetic task.

A problem is a start value and a chain of operations; the response writes every step out and ends with
the final value after ``####``::

    prompt:   start 74 add 29 mul 6 sub 45
    response: 74+29=103;103*6=618;618-45=573;####573

Problems are generated from a seed and an :class:`ArithSpec` (the difficulty knobs), so splits are
reproducible and every response can be checked step by step (:meth:`ArithTask.check_chain`).
The tiny testbed model is char-level and has no chat template: :meth:`ArithTask.user_prompt` is the bare
prompt, and the teacher's privileged prompt appends ``ref <hint>`` where the hint is either the full
reference response (``hint="full"``) or only the final answer (``hint="answer"``, ``ref ####573``).

Only the standard library is imported here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from tadllm.tasks.base import Example, Task, fill_template

__all__ = [
    "OPS",
    "HINT_MODES",
    "ArithSpec",
    "ArithProblem",
    "ArithTask",
    "sample_problem",
    "generate_problems",
    "make_splits",
    "parse_source",
    "extract_answer",
    "chain_errors",
    "check_chain",
    "write_jsonl",
]

# op name -> symbol used in the response
OPS: dict[str, str] = {"add": "+", "sub": "-", "mul": "*"}
HINT_MODES = ("full", "answer")
DEFAULT_TEMPLATE = "{question} ref {reference}"  # {reference} = the hint text of the mode
ANSWER_MARKER = "####"

COMMUTATIVE = ("add", "mul")
_SYMBOL_TO_OP = {v: k for k, v in OPS.items()}
_STEP_RE = re.compile(r"(-?\d+)([+*-])(\d+)=(-?\d+)")
_ANSWER_RE = re.compile(r"\s*(-?\d+)")


def _apply(op: str, a: int, b: int) -> int:
    if op == "add":
        return a + b
    if op == "sub":
        return a - b
    if op == "mul":
        return a * b
    raise ValueError(f"unknown op {op!r}")


# --------------------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class ArithSpec:
    """Difficulty knobs of the generator (all ranges inclusive).

    - ``min_ops`` / ``max_ops``: number of operations, drawn uniformly per problem.
    - ``start_range``: the start value; ``add_range`` / ``sub_range`` / ``mul_range``: operands.
    - ``min_value`` / ``max_value``: bounds for every intermediate value; an op that would leave them is
      resampled (op and operand).
    - ``ops``: the allowed operations (subset of ``add``, ``sub``, ``mul``), drawn uniformly.
    - ``max_response_chars``: longest allowed response; a chain that is longer is redrawn with the same op
      count (so it must be reachable with ``max_ops`` ops, else ValueError). The default 63 keeps at least
      one EOS in the testbed's 64-position generation. ``None`` disables the limit.
    - ``max_resample``: retries per op and per chain before the spec is declared infeasible.
    - ``commute``: probability that a step of a commutative op (add, mul) is written with its operands
      swapped in the reference response (``29+74=103`` instead of ``74+29=103``). With ``commute > 0`` a
      problem has several valid responses, as real tasks do, so the tokens far ahead of a decoding step are
      genuinely uncertain. The verifier accepts either order whatever this knob is. ``0`` (the default)
      draws exactly the problems of earlier versions.
    """

    min_ops: int = 3
    max_ops: int = 5
    start_range: tuple[int, int] = (1, 99)
    add_range: tuple[int, int] = (1, 99)
    sub_range: tuple[int, int] = (1, 99)
    mul_range: tuple[int, int] = (2, 9)
    min_value: int = 0
    max_value: int = 9999
    ops: tuple[str, ...] = ("add", "sub", "mul")
    max_response_chars: int | None = 63
    max_resample: int = 200
    commute: float = 0.0

    def __post_init__(self) -> None:
        for name in ("start_range", "add_range", "sub_range", "mul_range"):
            rng = tuple(int(x) for x in getattr(self, name))
            if len(rng) != 2 or rng[0] > rng[1]:
                raise ValueError(f"ArithSpec.{name} must be (lo, hi) with lo <= hi, got {getattr(self, name)!r}")
            if name != "start_range" and rng[0] < 0:
                raise ValueError(f"ArithSpec.{name}: operands must be >= 0, got {rng}")
            object.__setattr__(self, name, rng)
        ops = (self.ops,) if isinstance(self.ops, str) else tuple(self.ops)
        if not ops or any(op not in OPS for op in ops):
            raise ValueError(f"ArithSpec.ops must be a non-empty subset of {sorted(OPS)}, got {self.ops!r}")
        object.__setattr__(self, "ops", tuple(dict.fromkeys(ops)))  # dedupe, keep order
        if not 1 <= self.min_ops <= self.max_ops:
            raise ValueError(f"need 1 <= min_ops <= max_ops, got {self.min_ops}, {self.max_ops}")
        if self.min_value > self.max_value:
            raise ValueError("min_value > max_value")
        lo, hi = self.start_range
        if lo < self.min_value or hi > self.max_value:
            raise ValueError(f"start_range {self.start_range} outside [{self.min_value}, {self.max_value}]")
        if self.max_response_chars is not None and self.max_response_chars < 1:
            raise ValueError("max_response_chars must be >= 1 or None")
        if self.max_resample < 1:
            raise ValueError("max_resample must be >= 1")
        if not 0.0 <= self.commute <= 1.0:
            raise ValueError(f"ArithSpec.commute must be a probability in [0, 1], got {self.commute}")

    def operand_range(self, op: str) -> tuple[int, int]:
        return {"add": self.add_range, "sub": self.sub_range, "mul": self.mul_range}[op]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ArithSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ArithSpec fields {sorted(unknown)}")
        return cls(**d)


# ------------------------------------------------------------------------------------------ problem


@dataclass(frozen=True)
class ArithProblem:
    """A start value and a chain of ``(op, operand)``; renders the prompt and the reference response.
    ``swapped[i]`` writes step i's operands in the other order (commutative ops only)."""

    start: int
    steps: tuple[tuple[str, int], ...]
    swapped: tuple[bool, ...] = ()

    @property
    def values(self) -> list[int]:
        """Start value followed by every intermediate value (the last one is the answer)."""
        vals = [self.start]
        for op, b in self.steps:
            vals.append(_apply(op, vals[-1], b))
        return vals

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def prompt(self) -> str:
        return " ".join(["start", str(self.start)] + [f"{op} {b}" for op, b in self.steps])

    @property
    def response(self) -> str:
        vals = self.values
        swapped = self.swapped or (False,) * len(self.steps)
        lines = []
        for (op, b), prev, value, swap in zip(self.steps, vals, vals[1:], swapped):
            x, y = (b, prev) if swap else (prev, b)
            lines.append(f"{x}{OPS[op]}{y}={value};")
        body = "".join(lines)
        return f"{body}{ANSWER_MARKER}{vals[-1]}"

    @classmethod
    def parse(cls, prompt: str) -> "ArithProblem":
        """Parse a user prompt (``start N op N ...``). Raises ValueError on anything else."""
        toks = prompt.split()
        if len(toks) < 2 or toks[0] != "start" or len(toks) % 2:
            raise ValueError(f"not an arith prompt: {prompt!r}")
        try:
            start = int(toks[1])
            steps = tuple((toks[i], int(toks[i + 1])) for i in range(2, len(toks), 2))
        except ValueError as e:
            raise ValueError(f"not an arith prompt: {prompt!r}") from e
        if any(op not in OPS for op, _ in steps):
            raise ValueError(f"not an arith prompt (unknown op): {prompt!r}")
        return cls(start, steps)


def sample_problem(rng: random.Random, spec: ArithSpec | None = None) -> ArithProblem:
    """Draw one problem. The op count is drawn first and kept; an op leaving the value bounds is resampled,
    and a chain whose response exceeds ``max_response_chars`` is redrawn (same op count)."""
    spec = spec or ArithSpec()
    k = rng.randint(spec.min_ops, spec.max_ops)
    lo_v, hi_v = spec.min_value, spec.max_value
    ranges = {op: spec.operand_range(op) for op in spec.ops}
    for _chain in range(spec.max_resample):
        v = rng.randint(*spec.start_range)
        start = v
        steps: list[tuple[str, int]] = []
        for _ in range(k):
            for _try in range(spec.max_resample):
                op = rng.choice(spec.ops)
                b = rng.randint(*ranges[op])
                r = _apply(op, v, b)
                if lo_v <= r <= hi_v:
                    break
            else:
                break  # stuck at this value: redraw the chain
            steps.append((op, b))
            v = r
        if len(steps) < k:
            continue
        swapped = ()
        if spec.commute > 0:  # drawn only then, so commute=0 keeps the random stream of earlier versions
            swapped = tuple(op in COMMUTATIVE and rng.random() < spec.commute for op, _ in steps)
        prob = ArithProblem(start, tuple(steps), swapped)
        if spec.max_response_chars is not None and len(prob.response) > spec.max_response_chars:
            continue
        return prob
    raise ValueError(
        f"could not draw a {k}-op problem within {spec.max_resample} tries: the spec is infeasible or too "
        f"tight (value bounds [{lo_v}, {hi_v}], max_response_chars={spec.max_response_chars})"
    )


# -------------------------------------------------------------------------------------- generation


def _rng(seed: int | str, stream: str) -> random.Random:
    # string seeds are hashed with sha512 by `random`: stable across processes and Python versions
    return random.Random(f"tadllm-arith/{seed}/{stream}")


def _example(prob: ArithProblem, ex_id: str, meta: dict | None = None) -> Example:
    m = {"num_ops": len(prob.steps)}
    if meta:
        m.update(meta)
    return Example(id=ex_id, question=prob.prompt, reference=prob.response, answer=str(prob.answer), meta=m)


def _draw(
    rng: random.Random,
    n: int,
    spec: ArithSpec,
    unique: bool,
    exclude: set[str] | None,
    id_prefix: str,
    meta: dict | None,
) -> list[Example]:
    out: list[Example] = []
    seen: set[str] = set()
    exclude = exclude or set()
    max_attempts = 50 * n + 1000
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > max_attempts:
            raise ValueError(
                f"only {len(out)} of {n} distinct problems after {max_attempts} draws: the spec's problem space "
                "is too small for this many (unique) problems"
            )
        prob = sample_problem(rng, spec)
        p = prob.prompt
        if p in exclude or (unique and p in seen):
            continue
        seen.add(p)
        out.append(_example(prob, f"{id_prefix}/{len(out)}", meta))
    return out


def generate_problems(
    n: int,
    seed: int | str = 0,
    spec: ArithSpec | None = None,
    *,
    unique: bool = False,
    exclude: Iterable[str] | None = None,
) -> list[Example]:
    """``n`` problems drawn from ``seed`` (deterministic). ``unique`` drops repeated prompts; ``exclude``
    is a set of prompt strings never to return. The first k of ``generate_problems(n, ...)`` equal
    ``generate_problems(k, ...)``."""
    spec = spec or ArithSpec()
    excl = set(exclude) if exclude is not None else None
    return _draw(_rng(seed, "gen"), n, spec, unique, excl, f"arith/{seed}/gen", {"seed": seed})


def _split(
    split: str, n: int, seed: int | str, spec: ArithSpec, exclude: set[str] | None = None
) -> list[Example]:
    return _draw(_rng(seed, split), n, spec, True, exclude, f"arith/{seed}/{split}", {"seed": seed, "split": split})


def make_splits(
    n_train: int, n_test: int, seed: int | str = 0, spec: ArithSpec | None = None
) -> tuple[list[Example], list[Example]]:
    """``(train, test)``, each without repeated prompts and with no prompt in both.

    The test split is drawn first from its own stream, so it depends only on ``(n_test, seed, spec)``
    (and is a prefix of any larger test split); train comes from a separate stream with test prompts
    excluded."""
    spec = spec or ArithSpec()
    test = _split("test", n_test, seed, spec)
    train = _split("train", n_train, seed, spec, exclude={ex.question for ex in test})
    return train, test


# ------------------------------------------------------------------------------------ source string

_RANGE_KEYS = {"start": "start_range", "add": "add_range", "sub": "sub_range", "mul": "mul_range"}
_INT_KEYS = {"min_ops", "max_ops", "min_value", "max_value", "max_resample"}
_FLOAT_KEYS = {"commute"}
_RANGE_RE = re.compile(r"(-?\d+)(?:-|\.\.)(-?\d+)")


def parse_source(source: str) -> dict:
    """Parse ``synthetic[:key=value,...]`` into a dict with keys ``n``, ``n_train``, ``n_test``, ``seed``,
    ``split`` (each present only when given) and ``spec`` (dict of :class:`ArithSpec` overrides).

    Spec keys: ``min_ops``, ``max_ops``, ``min_value``, ``max_value``, ``max_resample``,
    ``max_chars`` (``max_response_chars``; ``none`` disables), ``ops`` (``add+mul``),
    ``start`` / ``add`` / ``sub`` / ``mul`` ranges (``2-9`` or ``2..9``), ``commute`` (a probability)."""
    head, _, rest = source.partition(":")
    if head.strip() != "synthetic":
        raise ValueError(f"not a synthetic source string: {source!r}")
    out: dict = {"spec": {}}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not eq or not val:
            raise ValueError(f"bad item {item!r} in {source!r} (expected key=value)")
        if key in ("n", "n_train", "n_test"):
            out[key] = int(val)
        elif key == "seed":
            out[key] = int(val) if re.fullmatch(r"-?\d+", val) else val
        elif key == "split":
            out[key] = val
        elif key in _INT_KEYS:
            out["spec"][key] = int(val)
        elif key in _FLOAT_KEYS:
            out["spec"][key] = float(val)
        elif key in ("max_chars", "max_response_chars"):
            out["spec"]["max_response_chars"] = None if val.lower() in ("none", "0", "off") else int(val)
        elif key == "ops":
            out["spec"]["ops"] = tuple(o.strip() for o in re.split(r"[+|/ ]", val) if o.strip())
        elif key in _RANGE_KEYS:
            m = _RANGE_RE.fullmatch(val)
            if not m:
                raise ValueError(f"bad range {item!r} in {source!r} (expected lo-hi)")
            out["spec"][_RANGE_KEYS[key]] = (int(m.group(1)), int(m.group(2)))
        else:
            raise ValueError(
                f"unknown key {key!r} in {source!r}; known: n, n_train, n_test, seed, split, min_ops, max_ops, "
                "min_value, max_value, max_chars, max_resample, ops, start, add, sub, mul, commute"
            )
    return out


# ----------------------------------------------------------------------------------- verification


def extract_answer(text: str) -> str | None:
    """The integer right after the last ``####`` (leading whitespace allowed, anything after it ignored),
    canonicalised (``####0573`` -> ``"573"``); None when there is no ``####`` or no number after the last one."""
    if text is None:
        return None
    i = text.rfind(ANSWER_MARKER)
    if i < 0:
        return None
    m = _ANSWER_RE.match(text, i + len(ANSWER_MARKER))
    return str(int(m.group(1))) if m else None


def _problem_of(example: Example) -> ArithProblem:
    return ArithProblem.parse(example.question)


def chain_errors(text: str, example: Example) -> list[str]:
    """Every problem with the chain of thought in ``text`` (empty list = fully correct).

    Checks: a final ``####`` answer equal to the gold answer; exactly one ``a<op>b=c;`` step per prompt op,
    with the prompt's op and operand, ``a`` equal to the previous value (the start value first), and
    ``c`` arithmetically right (for ``+`` and ``*`` the operands may come in either order); the final
    answer equal to the last step's value. Text after the final answer's number is ignored."""
    prob = _problem_of(example)
    errors: list[str] = []
    i = text.rfind(ANSWER_MARKER)
    if i < 0:
        return ["no '####' final answer"]
    final = extract_answer(text)
    if final is None:
        errors.append("no number after the last '####'")
    elif int(final) != int(example.answer):
        errors.append(f"final answer {final} != gold {example.answer}")
    body = text[:i].strip()
    if body and not body.endswith(";"):
        errors.append("chain does not end with ';' before '####'")
    pieces = [p for p in body.split(";")]
    if pieces and pieces[-1] == "":
        pieces.pop()
    if len(pieces) != len(prob.steps):
        errors.append(f"{len(pieces)} steps for {len(prob.steps)} ops")
    prev = prob.start
    last_value: int | None = None
    for j, piece in enumerate(pieces):
        m = _STEP_RE.fullmatch(piece)
        if not m:
            errors.append(f"step {j + 1}: malformed {piece!r}")
            last_value = None
            prev = None
            continue
        a, sym, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        op = _SYMBOL_TO_OP[sym]
        if op in COMMUTATIVE and prev is not None and a != prev and b == prev and j < len(prob.steps) \
                and (op, a) == prob.steps[j]:
            a, b = b, a  # written as operand<op>previous value
        if prev is not None and a != prev:
            errors.append(f"step {j + 1}: starts from {a}, expected {prev}")
        if j < len(prob.steps) and (op, b) != prob.steps[j]:
            exp_op, exp_b = prob.steps[j]
            errors.append(f"step {j + 1}: {OPS[op]}{b} but the prompt says {OPS[exp_op]}{exp_b}")
        if _apply(op, a, b) != c:
            errors.append(f"step {j + 1}: {a}{sym}{b}={c} is wrong ({_apply(op, a, b)})")
        prev = last_value = c
    if final is not None and last_value is not None and int(final) != last_value:
        errors.append(f"final answer {final} != last step value {last_value}")
    return errors


def check_chain(text: str, example: Example) -> bool:
    """True iff every step of ``text`` is right and follows the prompt (see :func:`chain_errors`)."""
    return not chain_errors(text, example)


# ---------------------------------------------------------------------------------------------- I/O


def write_jsonl(examples: Iterable[Example], path: str | os.PathLike) -> Path:
    """Write examples as JSONL (one ``Example`` per line: id, question, reference, answer, meta)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            row = {"id": ex.id, "question": ex.question, "reference": ex.reference, "answer": ex.answer,
                   "meta": ex.meta}
            f.write(json.dumps(row) + "\n")
    return path


# --------------------------------------------------------------------------------------------- task


class ArithTask(Task):
    """The testbed task. ``hint`` picks what the teacher's privileged prompt reveals: ``"full"`` (the whole
    reference response) or ``"answer"`` (only ``####<answer>``). ``spec``, ``seed``, ``n_train``, ``n_test``
    define the generated splits that ``load()`` returns when no source is given."""

    name = "arith"
    kind = "synthetic"
    privileged_template = DEFAULT_TEMPLATE

    def __init__(
        self,
        hint: str = "answer",
        spec: ArithSpec | None = None,
        seed: int | str = 0,
        n_train: int = 100_000,
        n_test: int = 2000,
    ) -> None:
        if hint not in HINT_MODES:
            raise ValueError(f"hint must be one of {HINT_MODES}, got {hint!r}")
        self.hint = hint
        self.spec = spec or ArithSpec()
        self.seed = seed
        self.n_train = n_train
        self.n_test = n_test

    def __repr__(self) -> str:
        return (f"ArithTask(hint={self.hint!r}, spec={self.spec!r}, seed={self.seed!r}, "
                f"n_train={self.n_train}, n_test={self.n_test})")

    # -- data
    def load(self, source: str | os.PathLike | None = None, split: str = "test", limit: int | None = None
             ) -> list[Example]:
        """Examples of ``split``.

        - ``None``: the task's generated split (``spec``, ``seed``, ``n_train`` / ``n_test``).
        - ``"synthetic[:n=2000,seed=1,split=test,...]"``: a generated split; keys override the task's
          settings (``split`` in the string wins over the argument; ``n`` is the size of that split; spec
          keys as in :func:`parse_source`). Train always excludes the test split's prompts.
        - anything else goes to :meth:`Task.load`: a ``.jsonl`` / ``.json`` / ``.parquet`` file, or a
          directory holding ``{split}*`` files (e.g. written by :func:`write_jsonl`). Rows need
          ``question`` (or ``prompt``); ``reference`` / ``answer`` are recomputed when missing.
        ``limit`` keeps the first ``limit`` examples (for generated splits only those are generated)."""
        if source is None or (isinstance(source, str) and source.strip().split(":", 1)[0] == "synthetic"):
            return self._load_generated(None if source is None else source.strip(), split, limit)
        return super().load(source, split=split, limit=limit)

    def to_example(self, row: dict, index: int, split: str) -> Example:
        q = row["prompt"] if "question" not in row and "prompt" in row else row["question"]
        if not isinstance(q, str):
            raise ValueError(f"field 'question' must be a string, got {type(q).__name__}")
        ref = row.get("reference", row.get("response"))
        ans = row.get("answer")
        if ref is None or ans is None:
            prob = ArithProblem.parse(q)
            ref = prob.response if ref is None else ref
            ans = prob.answer if ans is None else ans
        meta = row.get("meta") or {}
        if isinstance(meta, str):
            meta = json.loads(meta) if meta.strip() else {}
        return Example(id=self.default_id(row, index, split, key="id"), question=q, reference=str(ref),
                       answer=str(ans), meta=dict(meta))

    def _load_generated(self, source: str | None, split: str, limit: int | None) -> list[Example]:
        opts = parse_source(source) if source else {"spec": {}}
        split = opts.get("split", split)
        if split not in ("train", "test"):
            raise ValueError(f"arith: generated splits are 'train' and 'test', got {split!r}")
        spec = dataclasses.replace(self.spec, **opts["spec"]) if opts["spec"] else self.spec
        seed = opts.get("seed", self.seed)
        n_test = opts.get("n_test", self.n_test)
        n_train = opts.get("n_train", self.n_train)
        if "n" in opts:
            if split == "test":
                n_test = opts["n"]
            else:
                n_train = opts["n"]
        n = n_test if split == "test" else n_train
        if limit is not None:
            n = min(n, limit)
        if split == "test":
            return _split("test", n, seed, spec)
        test_prompts = {ex.question for ex in _split("test", n_test, seed, spec)}
        return _split("train", n, seed, spec, exclude=test_prompts)

    # -- prompts
    def user_prompt(self, example: Example) -> str:
        return example.question

    def hint_text(self, example: Example, hint: str | None = None) -> str:
        mode = hint or self.hint
        if mode == "full":
            return example.reference
        if mode == "answer":
            return f"{ANSWER_MARKER}{example.answer}"
        raise ValueError(f"hint must be one of {HINT_MODES}, got {mode!r}")

    def privileged_prompt(self, example: Example, template: str | None = None, *, hint: str | None = None
                          ) -> str:
        """``{question} ref {reference}`` by default, where ``reference`` is the hint text of the task's mode
        (``hint`` overrides the mode for this call). ``template`` may use ``{question}``, ``{reference}``
        (= ``{hint}``), ``{answer}`` and ``{full_reference}``; other braces are left alone."""
        h = self.hint_text(example, hint)
        return fill_template(template or self.privileged_template, question=self.teacher_question(example),
                             reference=h, hint=h, answer=str(example.answer), full_reference=example.reference)

    # -- scoring
    def extract_answer(self, text: str) -> str | None:
        return extract_answer(text)

    def is_correct(self, text: str, example: Example) -> bool:
        got = extract_answer(text)
        if got is None:
            return False
        try:
            return int(got) == int(str(example.answer).strip())
        except ValueError:
            return False

    def check_chain(self, text: str, example: Example) -> bool:
        return check_chain(text, example)

    def chain_errors(self, text: str, example: Example) -> list[str]:
        return chain_errors(text, example)

    def score_batch(self, texts: Sequence[str], examples: Sequence[Example]) -> list[bool]:
        if len(texts) != len(examples):
            raise ValueError(f"{len(texts)} texts for {len(examples)} examples")
        return [self.is_correct(t, ex) for t, ex in zip(texts, examples)]
