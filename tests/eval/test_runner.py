"""The evaluation runner: evaluate -> run dict, sweeps -> results.json / results.md (resumable), rank
sharding and merging, the `tad eval` / `tad report` / `tad aup` entry points, on a tiny random LLaDA with
the testbed's char tokenizer."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from tadllm.decoding import DecodeConfig
from tadllm.eval import runner
from tadllm.eval.report import load_results, report_main
from tadllm.eval.runner import (
    DistContext,
    evaluate,
    main_aup,
    main_eval,
    main_report,
    parse_sweep,
    run_sweep,
    sweep_configs,
)

from tadtest import free_port

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GEN = dict(gen_length=32, block_length=8, stop_at_eos=True)
# Near-uniform logits over 57 tokens have ~4.0 nats of entropy: 5.0 reveals a whole block per forward,
# 0.5 one token per forward, so the two points differ clearly in TPF.
FAST, SLOW = 5.0, 0.5
RUN_KEYS = {"config", "aggregate", "records", "model", "seed", "batch_size", "world_size", "n_examples",
            "elapsed_s", "task"}
RECORD_KEYS = {"id", "index", "output", "answer", "correct", "nfe", "num_tokens", "prompt_tokens", "wall_time"}


# ----------------------------------------------------------------------------------- fixtures


class FakeArithTask:
    """Stand-in with the Task interface, used only when tadllm.tasks.arith cannot be imported."""

    name, kind = "arith", "synthetic"

    def load(self, source=None, split="test", limit=None):
        from types import SimpleNamespace

        rows = [json.loads(line) for line in Path(source).read_text().splitlines() if line.strip()]
        rows = rows[:limit] if limit is not None else rows
        return [SimpleNamespace(id=str(r.get("id", i)), question=r["question"], reference=r["reference"],
                                answer=r["answer"], meta={}) for i, r in enumerate(rows)]

    def user_prompt(self, ex):
        return ex.question

    def extract_answer(self, text):
        tail = text.rsplit("####", 1)
        return tail[1].strip() or None if len(tail) == 2 else None

    def score_batch(self, texts, examples):
        return [self.extract_answer(t) == ex.answer for t, ex in zip(texts, examples)]


ROWS = [
    {"id": f"q{i}", "question": q, "reference": r, "answer": a}
    for i, (q, r, a) in enumerate([
        ("start 8 mul 2 add 67", "8*2=16;16+67=83;####83", "83"),
        ("start 5 add 3", "5+3=8;####8", "8"),
        ("start 40 sub 1 mul 2", "40-1=39;39*2=78;####78", "78"),
        ("start 9 add 9 add 9", "9+9=18;18+9=27;####27", "27"),
        ("start 2 mul 3", "2*3=6;####6", "6"),
        ("start 71 sub 70 add 5 mul 4", "71-70=1;1+5=6;6*4=24;####24", "24"),
    ])
]


def _task():
    try:
        from tadllm.tasks.arith import ArithTask

        return ArithTask()
    except Exception:  # the tasks package is not importable in this checkout
        return FakeArithTask()


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture(scope="module")
def loaded(ckpt):
    from tadllm.models import load_model

    return load_model(ckpt, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def task_examples(data_file):
    task = _task()
    return task, task.load(str(data_file), split="test")


def _cfg(threshold=FAST, **kw):
    return DecodeConfig(policy="entropy", threshold=threshold, **{**GEN, **kw})


def _check_run(run, n, cfg=None):
    assert RUN_KEYS <= set(run)
    if cfg is not None:
        assert run["config"] == cfg.to_dict()
    recs = run["records"]
    assert len(recs) == n == run["n_examples"]
    assert [r["index"] for r in recs] == list(range(n))
    for r in recs:
        assert RECORD_KEYS <= set(r)
        assert isinstance(r["output"], str) and isinstance(r["correct"], bool)
        assert isinstance(r["nfe"], int) and r["nfe"] >= 1
        assert isinstance(r["num_tokens"], int) and 0 <= r["num_tokens"] <= run["config"]["gen_length"]
        assert len(r["output"]) <= r["num_tokens"]  # char tokenizer: one char per kept non-special token
        assert r["wall_time"] > 0
    agg = run["aggregate"]
    assert agg["n"] == n and 0.0 <= agg["accuracy"] <= 100.0
    assert agg["accuracy"] == pytest.approx(100.0 * sum(r["correct"] for r in recs) / n)
    assert agg["total_tokens"] == sum(r["num_tokens"] for r in recs)
    assert agg["total_nfe"] == sum(r["nfe"] for r in recs)
    assert agg["tpf"] == pytest.approx(agg["total_tokens"] / agg["total_nfe"])
    assert agg["tokens_per_s"] > 0 and agg["wall_time"] > 0


# ----------------------------------------------------------------------------------- sweeps parsing


def test_parse_sweep_single_product_and_types():
    assert parse_sweep(None) == [{}]
    assert parse_sweep([]) == [{}]
    assert parse_sweep("threshold=0.9,0.7,0.5") == [{"threshold": 0.9}, {"threshold": 0.7}, {"threshold": 0.5}]
    pts = parse_sweep(["threshold=0.9,0.5", "block-length=16,32"])
    assert pts == [{"threshold": 0.9, "block_length": 16}, {"threshold": 0.9, "block_length": 32},
                   {"threshold": 0.5, "block_length": 16}, {"threshold": 0.5, "block_length": 32}]
    assert all(isinstance(p["block_length"], int) for p in pts)
    assert parse_sweep("steps=none,64") == [{"steps": None}, {"steps": 64}]
    assert parse_sweep("multi_block=true,false") == [{"multi_block": True}, {"multi_block": False}]
    assert parse_sweep("policy=confidence,entropy") == [{"policy": "confidence"}, {"policy": "entropy"}]
    assert parse_sweep("threshold=1") == [{"threshold": 1.0}]


@pytest.mark.parametrize("spec, match", [
    ("threshold", "key=v1"),
    ("nonsense=1,2", "unknown decoding option"),
    ("block_length=16.5", "not a valid int"),
    ("threshold=abc", "not a valid float"),
    ("threshold=", "no values"),
    ("gen_length=none", "cannot be None"),
    ("threshold=0.5,0.5", "repeated"),
])
def test_parse_sweep_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_sweep(spec)
    with pytest.raises(ValueError, match="given twice"):
        parse_sweep(["threshold=0.5", "threshold=0.7"])


def test_sweep_configs_validate_points():
    base = {"policy": "entropy", "gen_length": 32, "block_length": 8}  # no threshold: the sweep sets it
    cfgs = sweep_configs(base, parse_sweep("threshold=0.9,0.5"))
    assert [c.threshold for c in cfgs] == [0.9, 0.5]
    with pytest.raises(ValueError, match="needs a threshold"):
        sweep_configs(base, [{}])
    with pytest.raises(ValueError, match="no effect with policy 'low_confidence'"):
        sweep_configs({**base, "policy": "low_confidence"}, parse_sweep("threshold=0.9,0.5"))
    with pytest.raises(ValueError, match="no effect with policy 'entropy'"):
        sweep_configs({**base, "threshold": 0.5}, parse_sweep("steps=8,16"))
    with pytest.raises(ValueError, match="block_length 12 must divide"):
        sweep_configs({**base, "threshold": 0.5}, parse_sweep("block_length=8,12"))


# ----------------------------------------------------------------------------------- evaluate


def test_evaluate_returns_a_valid_run(loaded, task_examples, ckpt):
    model, tok, family = loaded
    task, examples = task_examples
    cfg = _cfg()
    run = evaluate(model, tok, family, task, examples, cfg, batch_size=4, model_path=str(ckpt), progress=False)
    _check_run(run, len(examples), cfg)
    assert run["model"] == str(ckpt) and run["seed"] == cfg.seed and run["world_size"] == 1
    assert "partial" not in run
    assert [r["id"] for r in run["records"]] == [ex.id for ex in examples]
    # The char tokenizer has no chat template: the prompt is the bare question, no special tokens added.
    assert run["records"][1]["prompt_tokens"] == len(examples[1].question)
    # A threshold above the uniform entropy reveals whole blocks: fewer forwards than tokens.
    assert run["aggregate"]["tpf"] > 1.5
    slow = evaluate(model, tok, family, task, examples, _cfg(SLOW), batch_size=4, progress=False)
    assert slow["aggregate"]["tpf"] < run["aggregate"]["tpf"]


def test_evaluate_text_is_cut_at_first_stop_token(loaded, task_examples):
    """Output text = decode(tokens before the first stop token, special tokens skipped)."""
    from tadllm.decoding import generate
    from tadllm.models import encode_prompt

    model, tok, family = loaded
    task, examples = task_examples
    cfg = _cfg(stop_at_eos=False)  # the whole canvas is decoded: EOS tails are present
    run = evaluate(model, tok, family, task, examples[:1], cfg, batch_size=1, progress=False)
    prompt = encode_prompt(tok, family, task.user_prompt(examples[0]))
    out = generate(model, family, [prompt], cfg)
    ids = out.tokens[0].tolist()
    stops = [i for i, t in enumerate(ids) if t in family.stop_token_ids]
    n = stops[0] if stops else len(ids)
    rec = run["records"][0]
    assert rec["num_tokens"] == n
    assert rec["output"] == tok.decode(ids[:n], skip_special_tokens=True)
    assert rec["nfe"] == int(out.nfe[0])


class OracleLM(torch.nn.Module):
    """Writes a fixed response (then EOS) for each known prompt, with one-hot logits (entropy ~0)."""

    def __init__(self, responses: dict, gen_length: int, vocab: int, eos: int):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # generate() reads the device from the parameters
        self.config = types.SimpleNamespace(max_sequence_length=256)
        self.targets = {p: (r + [eos] * gen_length)[:gen_length] for p, r in responses.items()}
        self.L, self.V = gen_length, vocab

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        B, T = input_ids.shape
        logits = torch.zeros(B, T, self.V)
        for b in range(B):
            # no mask: no padding among the step's rows (the decoding loop passes none then)
            keep = (attention_mask[b, : T - self.L].bool() if attention_mask is not None
                    else torch.ones(T - self.L, dtype=torch.bool))
            target = self.targets[tuple(input_ids[b, : T - self.L][keep].tolist())]
            logits[b, torch.arange(T - self.L, T), torch.tensor(target)] = 30.0
        return types.SimpleNamespace(logits=logits)


def test_evaluate_with_an_oracle_model_scores_and_stops_at_eos(loaded, task_examples):
    """Right answers for even examples, wrong for odd ones: accuracy, EOS cut, NFE and TPF are exact."""
    _, tok, family = loaded
    task, examples = task_examples
    responses, texts = {}, []
    for i, ex in enumerate(examples):
        text = ex.reference if i % 2 == 0 else f"{ex.reference.rsplit('####', 1)[0]}####{int(ex.answer) + 1}"
        texts.append(text)
        responses[tuple(tok.encode(task.user_prompt(ex), add_special_tokens=False))] = tok.encode(
            text, add_special_tokens=False)
    oracle = OracleLM(responses, 32, len(tok), family.eos_token_id)
    run = evaluate(oracle, tok, family, task, examples, _cfg(FAST), batch_size=4, progress=False)
    _check_run(run, len(examples))
    recs = run["records"]
    assert [r["output"] for r in recs] == texts
    assert [r["correct"] for r in recs] == [i % 2 == 0 for i in range(len(examples))]
    assert run["aggregate"]["accuracy"] == pytest.approx(50.0)
    assert [r["answer"] for r in recs] == [t.rsplit("####", 1)[1] for t in texts]
    assert [r["num_tokens"] for r in recs] == [len(t) for t in texts]
    # Entropy ~0 everywhere: one forward per block of 8 up to and including the block holding EOS.
    assert [r["nfe"] for r in recs] == [len(t) // 8 + 1 for t in texts]
    assert run["aggregate"]["tpf"] == pytest.approx(sum(map(len, texts)) / sum(len(t) // 8 + 1 for t in texts))
    # Without the early stop the whole canvas is decoded: more forwards, the same text.
    full = evaluate(oracle, tok, family, task, examples, _cfg(FAST, stop_at_eos=False), batch_size=4,
                    progress=False)
    assert [r["output"] for r in full["records"]] == texts
    assert [r["nfe"] for r in full["records"]] == [4] * len(examples)


class FakeDist(DistContext):
    """Rank `rank` of 2 without a process group: gather returns [rank 0's, given rank 1's] records."""

    def __init__(self, rank, other=None):
        super().__init__(rank=rank, world_size=2)
        self.other = other

    def gather(self, obj):
        return [obj, self.other] if self.is_main else None

    def broadcast(self, obj):
        return obj


def test_ranks_shard_examples_and_rank0_merges(loaded, task_examples):
    model, tok, family = loaded
    task, examples = task_examples
    cfg = _cfg()
    single = evaluate(model, tok, family, task, examples, cfg, batch_size=1, progress=False)
    r1 = evaluate(model, tok, family, task, examples, cfg, batch_size=1, progress=False, dist=FakeDist(1))
    assert r1["partial"] is True and [r["index"] for r in r1["records"]] == [1, 3, 5]
    # The padding a distributed sampler adds comes back as a repeat: merged away by index.
    merged = evaluate(model, tok, family, task, examples, cfg, batch_size=1, progress=False,
                      dist=FakeDist(0, other=r1["records"] + r1["records"][:1]))
    _check_run(merged, len(examples), cfg)
    assert merged["world_size"] == 2 and "partial" not in merged
    strip = lambda recs: [{k: v for k, v in r.items() if k != "wall_time"} for r in recs]  # noqa: E731
    assert strip(merged["records"]) == strip(single["records"])
    assert merged["aggregate"]["total_nfe"] == single["aggregate"]["total_nfe"]
    assert merged["aggregate"]["total_tokens"] == single["aggregate"]["total_tokens"]


# ----------------------------------------------------------------------------------- run_sweep


def _sweep(loaded, task_examples, out, points, method="TAD-test", **kw):
    model, tok, family = loaded
    task, examples = task_examples
    base = {"policy": "entropy", **GEN}
    return run_sweep(model, tok, family, task, examples, base, points, out, model_name="tiny-llada",
                     method=method, batch_size=4, progress=False, log=lambda msg: None, **kw)


def test_run_sweep_writes_results_resumes_and_reports(loaded, task_examples, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    points = parse_sweep(f"threshold={FAST},{SLOW}")
    results = _sweep(loaded, task_examples, out, points)
    data = json.loads((out / "results.json").read_text())
    assert data == json.loads(json.dumps(results))
    assert (data["model"], data["method"], data["task"]) == ("tiny-llada", "TAD-test", "arith")
    assert data["data"]["n"] == len(task_examples[1])
    assert [r["config"]["threshold"] for r in data["runs"]] == [FAST, SLOW]
    for run in data["runs"]:
        _check_run(run, len(task_examples[1]))
    load_results(out / "results.json")  # the report's schema check
    md = (out / "results.md").read_text()
    assert "| arith | tiny-llada | TAD-test | threshold=5 |" in md and "threshold=0.5" in md and "AUP" in md
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    # The report reads the sweep's folder.
    if importlib.util.find_spec("matplotlib") is not None:
        rep = report_main([out], tmp_path / "report", n_boot=20)
        for key in ("accuracy_vs_tpf", "aup_bar"):
            assert Path(rep[key]).read_bytes()[:8] == PNG_MAGIC
        assert "TAD-test" in Path(rep["markdown"]).read_text()

    # Re-run: every point is already there, nothing is evaluated.
    calls = []
    real = runner.evaluate
    monkeypatch.setattr(runner, "evaluate", lambda *a, **k: calls.append(a[5]) or real(*a, **k))
    again = _sweep(loaded, task_examples, out, points)
    assert calls == [] and len(again["runs"]) == 2
    # A larger sweep evaluates only the new point and appends it.
    more = _sweep(loaded, task_examples, out, parse_sweep(f"threshold={FAST},{SLOW},4.5"))
    assert [c.threshold for c in calls] == [4.5] and len(more["runs"]) == 3
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 3
    # Another method / other examples in the same folder: refused; overwrite starts afresh.
    with pytest.raises(ValueError, match="different method"):
        _sweep(loaded, task_examples, out, points, method="other")
    task, examples = task_examples
    with pytest.raises(ValueError, match="different data"):
        _sweep(loaded, (task, examples[:3]), out, points)
    fresh = _sweep(loaded, task_examples, out, points[:1], overwrite=True)
    assert len(fresh["runs"]) == 1


def test_run_sweep_keeps_completed_points_when_a_later_one_fails(loaded, task_examples, tmp_path, monkeypatch):
    out = tmp_path / "crash"
    real = runner.evaluate

    def flaky(*a, **k):
        if a[5].threshold == SLOW:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "evaluate", flaky)
    with pytest.raises(KeyboardInterrupt):
        _sweep(loaded, task_examples, out, parse_sweep(f"threshold={FAST},{SLOW}"))
    data = json.loads((out / "results.json").read_text())
    assert [r["config"]["threshold"] for r in data["runs"]] == [FAST]
    monkeypatch.setattr(runner, "evaluate", real)
    resumed = _sweep(loaded, task_examples, out, parse_sweep(f"threshold={FAST},{SLOW}"))
    assert [r["config"]["threshold"] for r in resumed["runs"]] == [FAST, SLOW]


# ----------------------------------------------------------------------------------- command lines


def _eval_argv(ckpt, data_file, out, *extra):
    return ["--model", str(ckpt), "--task", "arith", "--data", str(data_file), "--limit", "5", "--out", str(out),
            "--policy", "entropy", "--gen-length", "32", "--block-length", "8", "--batch-size", "3",
            "--device", "cpu", "--no-progress", *extra]


@pytest.fixture
def arith_registered(monkeypatch):
    """`tad eval --task arith` resolves through tadllm.tasks.get_task; a fake one if it is missing."""
    try:
        from tadllm.tasks import get_task

        get_task("arith")
    except Exception:
        import tadllm.tasks

        monkeypatch.setattr(tadllm.tasks, "get_task", lambda name: FakeArithTask(), raising=False)


def test_main_eval_end_to_end(ckpt, data_file, tmp_path, capsys, arith_registered):
    out = tmp_path / "cli"
    rc = main_eval(_eval_argv(ckpt, data_file, out, "--sweep", f"threshold={FAST},{SLOW}", "--seed", "3"))
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "| task | model | method | config |" in stdout and "| arith |" in stdout
    data = load_results(out / "results.json")
    assert data["method"] == "entropy" and data["model"] == str(ckpt) and data["data"]["limit"] == 5
    assert len(data["runs"]) == 2
    for run in data["runs"]:
        _check_run(run, 5)
        assert run["config"]["seed"] == 3 and run["config"]["stop_at_eos"] is True and run["batch_size"] == 3
    assert (out / "results.md").exists()
    # Same command again: resumed, nothing new; --no-stop-at-eos is another config: one more run.
    assert main_eval(_eval_argv(ckpt, data_file, out, "--sweep", f"threshold={FAST},{SLOW}", "--seed", "3")) == 0
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 2
    assert main_eval(_eval_argv(ckpt, data_file, out, "--threshold", str(FAST), "--seed", "3",
                                "--no-stop-at-eos")) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 3 and runs[2]["config"]["stop_at_eos"] is False


def test_main_eval_with_kv_cache_records_it_and_terminates(ckpt, data_file, tmp_path, arith_registered):
    out = tmp_path / "cached"
    assert main_eval(_eval_argv(ckpt, data_file, out, "--threshold", str(FAST), "--use-cache", "dual")) == 0
    (run,) = load_results(out / "results.json")["runs"]
    _check_run(run, 5)
    assert run["config"]["use_cache"] == "dual"


def test_main_eval_rejects_bad_configs_before_loading(tmp_path):
    with pytest.raises(ValueError, match="needs a threshold"):
        main_eval(["--model", str(tmp_path / "missing"), "--task", "arith", "--policy", "entropy"])
    with pytest.raises(ValueError, match="no effect"):
        main_eval(["--model", str(tmp_path / "missing"), "--task", "arith", "--sweep", "threshold=0.5,0.7"])
    with pytest.raises(SystemExit):
        main_eval(["--task", "arith"])  # --model is required


def test_main_report_and_main_aup(ckpt, data_file, tmp_path, capsys, arith_registered):
    pytest.importorskip("matplotlib")
    out = tmp_path / "cli"
    main_eval(_eval_argv(ckpt, data_file, out, "--threshold", str(FAST), "--method", "mine"))
    capsys.readouterr()
    assert main_report([str(out), "--out", str(tmp_path / "rep"), "--n-boot", "10"]) == 0
    assert "mine" in capsys.readouterr().out
    assert (tmp_path / "rep" / "accuracy_vs_tpf.png").read_bytes()[:8] == PNG_MAGIC
    yaml_path = REPO / "configs" / "published" / "tad_llada.yaml"
    if yaml_path.exists():
        assert main_aup([str(yaml_path)]) == 0
        assert "257.0464" in capsys.readouterr().out  # the published TAD-LLaDA-Speed mean AUP


# ----------------------------------------------------------------------------------- accelerate launch


@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
                    reason="accelerate launcher not installed")
def test_accelerate_launch_two_cpu_processes_matches_one(ckpt, data_file, tmp_path, arith_registered):
    """`accelerate launch --num_processes 2 -m tadllm.eval.runner ...` gives the records of one process."""
    try:
        from tadllm.tasks import get_task

        get_task("arith")
    except Exception:
        pytest.skip("the arith task is needed by the launched processes")
    argv = _eval_argv(ckpt, data_file, tmp_path / "two", "--threshold", str(FAST), "--batch-size", "1")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launcher = str(Path(sys.executable).parent / "accelerate")
    # `--multi_gpu` is accelerate's torchrun-style launcher; without CUDA the runner asks accelerate for a
    # gloo group on the CPU (a plain `--cpu` launch starts a single process).
    proc = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
                           "-m", "tadllm.eval.runner", *argv], env=env, capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())["runs"][0]
    assert two["world_size"] == 2
    main_eval(_eval_argv(ckpt, data_file, tmp_path / "one", "--threshold", str(FAST), "--batch-size", "1"))
    one = json.loads((tmp_path / "one" / "results.json").read_text())["runs"][0]
    strip = lambda recs: [{k: v for k, v in r.items() if k != "wall_time"} for r in recs]  # noqa: E731
    assert strip(two["records"]) == strip(one["records"])
    assert two["aggregate"]["tpf"] == pytest.approx(one["aggregate"]["tpf"])
