import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from tadllm.tasks.arith import (
    OPS,
    ArithProblem,
    ArithSpec,
    ArithTask,
    chain_errors,
    check_chain,
    extract_answer,
    generate_problems,
    make_splits,
    parse_source,
    write_jsonl,
)


def _values_ok(ex, spec):
    prob = ArithProblem.parse(ex.question)
    lo_s, hi_s = spec.start_range
    assert lo_s <= prob.start <= hi_s
    assert spec.min_ops <= len(prob.steps) <= spec.max_ops
    for op, b in prob.steps:
        assert op in spec.ops
        lo, hi = spec.operand_range(op)
        assert lo <= b <= hi
    assert all(spec.min_value <= v <= spec.max_value for v in prob.values)
    if spec.max_response_chars is not None:
        assert len(ex.reference) <= spec.max_response_chars


# ---------------------------------------------------------------------------------- generation


def test_format_matches_the_documented_example():
    prob = ArithProblem(74, (("add", 29), ("mul", 6), ("sub", 45)))
    assert prob.prompt == "start 74 add 29 mul 6 sub 45"
    assert prob.response == "74+29=103;103*6=618;618-45=573;####573"
    assert prob.answer == 573
    assert ArithProblem.parse(prob.prompt) == prob


def test_generate_is_deterministic_per_seed_and_prefix_stable():
    a = generate_problems(200, seed=3)
    b = generate_problems(200, seed=3)
    c = generate_problems(200, seed=4)
    assert a == b
    assert [e.question for e in a] != [e.question for e in c]
    assert generate_problems(50, seed=3) == a[:50]


def test_commute_writes_either_order_and_both_verify():
    prob = ArithProblem(74, (("add", 29), ("mul", 6), ("sub", 45)), swapped=(True, True, False))
    assert prob.response == "29+74=103;6*103=618;618-45=573;####573"
    ex = ArithTask().to_example({"question": prob.prompt, "reference": prob.response, "answer": "573"}, 0, "test")
    assert check_chain(prob.response, ex)
    assert check_chain("74+29=103;103*6=618;618-45=573;####573", ex)
    assert check_chain("29+74=103;103*6=618;618-45=573;####573", ex)
    errs = chain_errors("29+74=103;618*6=618;45-618=573;####573", ex)
    assert any("step 2" in e for e in errs) and any("step 3" in e for e in errs)  # sub does not commute
    assert chain_errors("28+74=102;102*6=612;612-45=567;####567", ex)  # wrong operand is still caught


def test_commute_knob_draws_swaps_and_zero_keeps_the_old_problems():
    plain = generate_problems(300, seed=5)
    assert plain == generate_problems(300, seed=5, spec=ArithSpec(commute=0.0))
    assert all(not ArithProblem.parse(e.question).swapped for e in plain)
    # every reference of the default spec is the unswapped rendering
    assert all(e.reference == ArithProblem.parse(e.question).response for e in plain)
    spec = ArithSpec(commute=0.5)
    mixed = generate_problems(300, seed=5, spec=spec)
    assert mixed == generate_problems(300, seed=5, spec=spec)
    n_comm = n_swapped = 0
    for e in mixed:
        prob = ArithProblem.parse(e.question)
        assert check_chain(e.reference, e)
        n_comm += sum(op in ("add", "mul") for op, _ in prob.steps)
        n_swapped += sum(e.reference.split(";")[i] != f"{v}{OPS[op]}{b}={prob.values[i + 1]}"
                         for i, ((op, b), v) in enumerate(zip(prob.steps, prob.values)))
    assert 0.4 < n_swapped / n_comm < 0.6
    assert parse_source("synthetic:n=5,commute=0.25")["spec"] == {"commute": 0.25}
    with pytest.raises(ValueError, match="commute"):
        ArithSpec(commute=1.5)


def test_make_splits_deterministic_disjoint_unique():
    train, test = make_splits(3000, 500, seed=7)
    train2, test2 = make_splits(3000, 500, seed=7)
    assert train == train2 and test == test2
    assert len(train) == 3000 and len(test) == 500
    tr, te = {e.question for e in train}, {e.question for e in test}
    assert len(tr) == 3000 and len(te) == 500  # no duplicates inside a split
    assert not tr & te  # no overlap
    assert len({e.id for e in train + test}) == 3500
    # the test split depends only on (n_test, seed, spec), and is a prefix of a bigger one
    _, test_small = make_splits(10, 200, seed=7)
    assert test_small == test[:200]


def test_splits_exclude_test_even_in_a_small_problem_space():
    # 1 op: start 1..9 x add 1..9 = 81 distinct problems
    spec = ArithSpec(min_ops=1, max_ops=1, ops=("add",), start_range=(1, 9), add_range=(1, 9))
    train, test = make_splits(60, 20, seed=0, spec=spec)
    assert not {e.question for e in train} & {e.question for e in test}
    with pytest.raises(ValueError, match="distinct"):
        make_splits(70, 20, seed=0, spec=spec)


def test_every_reference_verifies_and_bounds_hold():
    spec = ArithSpec()
    exs = generate_problems(2000, seed=11, spec=spec)
    for ex in exs:
        assert check_chain(ex.reference, ex), chain_errors(ex.reference, ex)
        assert extract_answer(ex.reference) == ex.answer
        assert ex.meta["num_ops"] == len(ArithProblem.parse(ex.question).steps)
        _values_ok(ex, spec)
    assert set(Counter(e.meta["num_ops"] for e in exs)) == {3, 4, 5}
    assert {op for e in exs for op, _ in ArithProblem.parse(e.question).steps} == set(OPS)


def test_tight_bounds_force_resampling():
    spec = ArithSpec(max_value=150, min_value=10, start_range=(10, 99), max_response_chars=None)
    for ex in generate_problems(500, seed=1, spec=spec):
        assert check_chain(ex.reference, ex)
        _values_ok(ex, spec)


def test_difficulty_knobs_change_op_counts_and_ops():
    easy = ArithSpec(min_ops=1, max_ops=2)
    hard = ArithSpec(min_ops=6, max_ops=8, max_response_chars=None)
    n_easy = [e.meta["num_ops"] for e in generate_problems(300, seed=0, spec=easy)]
    n_hard = [e.meta["num_ops"] for e in generate_problems(300, seed=0, spec=hard)]
    assert set(n_easy) == {1, 2} and set(n_hard) == {6, 7, 8}
    fixed = ArithSpec(min_ops=4, max_ops=4, ops=("add", "mul"), mul_range=(2, 3))
    for ex in generate_problems(300, seed=2, spec=fixed):
        _values_ok(ex, fixed)
    # a shorter response budget is respected (the op count is kept, so it must fit max_ops)
    short = ArithSpec(max_ops=3, max_response_chars=36)
    assert max(len(e.reference) for e in generate_problems(300, seed=0, spec=short)) <= 36
    with pytest.raises(ValueError, match="max_response_chars"):
        generate_problems(300, seed=0, spec=ArithSpec(max_response_chars=30))


def test_invalid_and_infeasible_specs():
    with pytest.raises(ValueError):
        ArithSpec(ops=("div",))
    with pytest.raises(ValueError):
        ArithSpec(min_ops=3, max_ops=2)
    with pytest.raises(ValueError):
        ArithSpec(mul_range=(9, 2))
    # only mul, start so large that any product leaves [0, 9999]
    stuck = ArithSpec(ops=("mul",), start_range=(5000, 9999), max_resample=20)
    with pytest.raises(ValueError, match="infeasible"):
        generate_problems(1, seed=0, spec=stuck)
    assert ArithSpec(ops=["add"]).ops == ("add",)  # lists are normalised (spec stays hashable)
    hash(ArithSpec())


# ---------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("74+29=103;####103", "103"),
        ("####573", "573"),
        ("74+29=103;103*6=618", None),  # no ####
        ("", None),
        ("####", None),
        ("####abc", None),
        ("####573<|eos|><|eos|>", "573"),  # garbage after
        ("####573;xyz 12", "573"),
        ("####12;####34", "34"),  # multiple: the last one
        ("####34;####", None),  # the last one has no number
        ("#####573", "573"),
        ("#### 7", "7"),
        ("####-5", "-5"),
        ("####0573", "573"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected
    assert ArithTask().extract_answer(text) == expected


def test_is_correct_and_score_batch():
    task = ArithTask()
    e = task.load("synthetic:n=3,seed=5")
    gold = e[0]
    assert task.is_correct(gold.reference, gold)
    assert task.is_correct(gold.reference + "<|eos|>junk", gold)
    assert task.is_correct(f"####{gold.answer}", gold)  # answer right, no chain: still correct
    assert not task.is_correct(f"####{int(gold.answer) + 1}", gold)
    assert not task.is_correct(gold.reference.replace("####", "##"), gold)
    texts = [e[0].reference, "nothing", e[2].reference]
    assert task.score_batch(texts, e) == [True, False, True]
    with pytest.raises(ValueError):
        task.score_batch(texts[:2], e)


def test_check_chain_catches_each_kind_of_error():
    task = ArithTask()
    prob = ArithProblem(74, (("add", 29), ("mul", 6), ("sub", 45)))
    ex = task.load("synthetic:n=1")[0]
    ex = dataclasses.replace(ex, question=prob.prompt, reference=prob.response, answer=str(prob.answer))
    good = "74+29=103;103*6=618;618-45=573;####573"
    assert task.check_chain(good, ex) and task.chain_errors(good, ex) == []
    assert check_chain(good + "<|eos|><|eos|>", ex)  # text after the answer is ignored
    bad = {
        "wrong arithmetic": "74+29=104;104*6=624;624-45=579;####579",
        "right answer, wrong step": "74+29=104;103*6=618;618-45=573;####573",
        "operand not from prompt": "74+29=103;103*7=721;721-148=573;####573",
        "missing step": "74+29=103;103*6=618;####618",
        "answer only": "####573",
        "extra step": "74+29=103;103*6=618;618-45=573;573+0=573;####573",
        "malformed": "74+29=103;103x6=618;618-45=573;####573",
        "no marker": "74+29=103;103*6=618;618-45=573;",
        "final != last value": "74+29=103;103*6=618;618-45=573;####574",
        "no final number": "74+29=103;103*6=618;618-45=573;####",
    }
    for why, text in bad.items():
        assert not check_chain(text, ex), why
        assert chain_errors(text, ex), why
    assert task.is_correct(bad["right answer, wrong step"], ex)  # the difference check_chain exists for


# ------------------------------------------------------------------------------------- prompts


def test_prompts_and_hint_modes():
    ex = ArithTask().load("synthetic:n=1,seed=2")[0]
    full, ans = ArithTask(hint="full"), ArithTask(hint="answer")
    assert full.user_prompt(ex) == ans.user_prompt(ex) == ex.question
    assert ex.question.startswith("start ")
    assert full.privileged_prompt(ex) == f"{ex.question} ref {ex.reference}"
    assert ans.privileged_prompt(ex) == f"{ex.question} ref ####{ex.answer}"
    assert ans.privileged_prompt(ex, hint="full") == full.privileged_prompt(ex)
    assert full.privileged_prompt(ex, template="{hint}|{question}") == f"{ex.reference}|{ex.question}"
    assert ans.privileged_prompt(ex, template="Q {question} R {reference} A {answer} {x}") == (
        f"Q {ex.question} R ####{ex.answer} A {ex.answer} {{x}}")  # unknown braces are left alone
    with pytest.raises(ValueError):
        ArithTask(hint="none")
    t = ArithTask()
    assert t.name == "arith" and t.kind == "synthetic" and t.hint in ("full", "answer")


# ---------------------------------------------------------------------------------------- load


def test_load_default_generated_splits():
    task = ArithTask(seed=3, n_train=400, n_test=100)
    test = task.load()
    train = task.load(split="train")
    assert len(test) == 100 and len(train) == 400
    assert not {e.question for e in test} & {e.question for e in train}
    assert task.load(limit=10) == test[:10]
    assert task.load(split="train", limit=7) == train[:7]
    assert (train, test) == make_splits(400, 100, seed=3)
    with pytest.raises(ValueError):
        task.load(split="validation")


def test_load_spec_string():
    task = ArithTask(n_test=100)
    a = task.load("synthetic:n=50,seed=1,split=test")
    assert len(a) == 50 and a == make_splits(0, 50, seed=1)[1]
    assert task.load("synthetic:seed=1", limit=50) == task.load("synthetic:n=50,seed=1")
    # split in the string wins; train excludes the (default-size) test split
    tr = task.load("synthetic:n=300,seed=1,split=train", split="test")
    assert len(tr) == 300 and not {e.question for e in tr} & {e.question for e in task.load("synthetic:seed=1")}
    hard = task.load("synthetic:n=100,seed=1,min_ops=6,max_ops=6,ops=add+sub,max_chars=none")
    assert {e.meta["num_ops"] for e in hard} == {6}
    assert all("mul" not in e.question for e in hard)
    r = task.load("synthetic:n=100,add=1-9,sub=1..9,mul=2-3,max_value=500,max_chars=48")
    spec = ArithSpec(add_range=(1, 9), sub_range=(1, 9), mul_range=(2, 3), max_value=500, max_response_chars=48)
    for e in r:
        _values_ok(e, spec)
    assert task.load("synthetic") == task.load()
    with pytest.raises(ValueError, match="unknown key"):
        task.load("synthetic:n=5,difficulty=hard")
    with pytest.raises(ValueError):
        parse_source("synthetic:n")
    assert parse_source("synthetic:n=5,seed=2")["spec"] == {}


def test_load_jsonl_and_directory(tmp_path):
    task = ArithTask(hint="full")
    train, test = make_splits(30, 10, seed=0)
    write_jsonl(test, tmp_path / "test.jsonl")
    write_jsonl(train, tmp_path / "train.jsonl")
    assert task.load(str(tmp_path / "test.jsonl")) == test
    assert task.load(tmp_path / "test.jsonl", limit=3) == test[:3]
    assert task.load(str(tmp_path), split="train") == train
    # rows holding only the prompt: reference and answer are recomputed
    p = tmp_path / "bare.jsonl"
    p.write_text("\n".join(json.dumps({"prompt": e.question}) for e in test) + "\n")
    bare = task.load(str(p))
    assert [(e.question, e.reference, e.answer) for e in bare] == [(e.question, e.reference, e.answer) for e in test]
    assert len({e.id for e in bare}) == 10
    with pytest.raises(FileNotFoundError):
        task.load(str(tmp_path / "missing.jsonl"))
    # meta stored as a JSON string (parquet-style) is decoded
    m = tmp_path / "meta.jsonl"
    m.write_text(json.dumps({"id": "x", "question": test[0].question, "meta": json.dumps({"k": 1})}) + "\n")
    assert task.load(str(m))[0].meta == {"k": 1} and task.load(str(m))[0].id == "x"
    # malformed rows name the file and line
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": test[0].question}) + "\n" + json.dumps({"question": "start x"}) + "\n")
    with pytest.raises(ValueError, match="line 2"):
        task.load(str(bad))
    with pytest.raises(ValueError, match="question"):
        bad.write_text(json.dumps({"reference": "1+1=2;####2"}) + "\n")
        task.load(str(bad))


def test_module_import_is_light():
    code = (
        "import sys, tadllm.tasks.arith; "
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers', 'datasets', 'pyarrow') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert res.returncode == 0, res.stderr
