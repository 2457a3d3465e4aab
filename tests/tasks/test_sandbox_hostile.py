"""Hostile "solutions" scored the way `tad eval` scores a code task (`task.score_batch`, the sandbox in
parallel): each must be contained and scored false, a correct solution in the same batch must still pass,
and the evaluation must finish.

The evaluation runs in a child process (`EVAL_SCRIPT`), so that a solution that managed to kill its
parent would kill that child (and fail the test), not pytest. Every hostile solution also defines the
correct function, so a failure comes from the containment, not from a missing answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tadllm.tasks.sandbox import run_program

SECRET = "tadllm-hostile-secret-5d2e"
SOLUTION = "def add(a, b):\n    return a + b\n"
MBPP_ROW = {"task_id": 1, "text": "Write a function to add two numbers.", "code": SOLUTION,
            "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"], "test_setup_code": ""}

# name -> program run before the (correct) solution; OUTSIDE is a folder outside the sandbox
HOSTILE = {
    "kill_parent": "import os\nos.kill(os.getppid(), 9)\n",
    "kill_parent_group": "import os\nos.killpg(os.getpgid(os.getppid()), 9)\n",
    "kill_parent_from_proc": (  # the evaluator's pid read from /proc, then os.kill
        "import os\n"
        "def ppid(pid):\n"
        "    return int(open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1])\n"
        "os.kill(ppid(ppid(os.readlink('/proc/self'))), 9)\n"),
    "network_connect": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\n",
    "network_dns": "import socket\nsocket.getaddrinfo('example.com', 80)\n",
    "fork_bomb": "import os\nwhile True:\n    os.fork()\n",
    "subprocess_shell": "import subprocess\nsubprocess.run('kill -9 $PPID', shell=True)\n",
    "memory_bomb": "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 2**20))\n",
    "infinite_loop": "while True:\n    pass\n",
    "sleep_forever": "import time\ntime.sleep(3600)\n",
    "large_output": "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
    "read_home_secret": "import os\nprint(open(os.path.expanduser('~/.tadllm-secret')).read())\n",
    "read_env_secret": "import os\nprint(os.environ['TADLLM_HOSTILE_SECRET'])\n",
    "read_parent_environ": "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())\n",
    "write_outside": "open(OUTSIDE + '/pwned.txt', 'w').write('x')\n",
    "delete_outside": "import os\nos.remove(OUTSIDE + '/keep.txt')\n",
    "exit_early": "import os\n" + SOLUTION + "os._exit(0)\n",
}
# Get around the Python-level guards (re-import the real `posix` module): only the OS-level PID
# namespace stops these, so they are run only where the kernel lets the sandbox make one.
BYPASS = {
    "kill_parent_reimported_posix": (
        "import sys\ndel sys.modules['posix']\nimport posix\n"
        "def ppid(pid):\n"
        "    fd = posix.open(f'/proc/{pid}/stat', posix.O_RDONLY)\n"
        "    data = posix.read(fd, 4096).decode()\n"
        "    return int(data.rsplit(')', 1)[1].split()[1])\n"
        "outer = ppid(posix.readlink('/proc/self'))\n"
        "posix.kill(ppid(outer), 9)\n"),
    "kill_parent_group_reimported_posix": (
        "import sys\ndel sys.modules['posix']\nimport posix\nposix.kill(0, 9)\n"),
}

EVAL_SCRIPT = textwrap.dedent("""
    import json, sys
    from tadllm.tasks import get_task
    rows_path, outputs_path = sys.argv[1], sys.argv[2]
    task = get_task("mbpp", num_shots=0, timeout=2.0, memory_mb=512, max_workers=2)
    example = task.load(rows_path)[0]
    outputs = json.loads(open(outputs_path).read())
    names = list(outputs)
    results = task.run_batch([outputs[n] for n in names], [example] * len(names))
    print(json.dumps({n: [r.passed, r.status, r.stdout[-300:] + r.stderr[-300:]] for n, r in zip(names, results)}))
""")


def kernel_allows_pid_namespaces() -> bool:
    """Whether this process could make a PID namespace (as root, or through a user namespace): checked in
    a throw-away child, independently of the sandbox."""
    code = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "print(libc.unshare(0x20000000) == 0 or libc.unshare(0x20000000 | 0x10000000) == 0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() == "True"


def score(tmp_path: Path, programs: dict[str, str]) -> dict:
    """Score `programs` (each followed by the correct solution) as a batch, in an evaluation subprocess."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "keep.txt").write_text("precious")
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / ".tadllm-secret").write_text(SECRET)
    outputs = {name: "```python\n" + src.replace("OUTSIDE", repr(str(outside))) + SOLUTION + "```"
               for name, src in programs.items()}
    outputs["correct"] = "```python\n" + SOLUTION + "```"
    (tmp_path / "rows.jsonl").write_text(json.dumps(MBPP_ROW) + "\n")
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    (tmp_path / "evaluate.py").write_text(EVAL_SCRIPT)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "HOME": str(home), "TADLLM_HOSTILE_SECRET": SECRET,
           "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(tmp_path / "evaluate.py"), str(tmp_path / "rows.jsonl"),
                           str(tmp_path / "outputs.json")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"the evaluation did not finish (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert time.monotonic() - start < 60
    verdicts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert verdicts.pop("correct")[0], "a correct solution in the same batch must still pass"
    assert (outside / "keep.txt").read_text() == "precious" and not (outside / "pwned.txt").exists()
    return verdicts


def test_hostile_solutions_are_contained_and_scored_false(tmp_path):
    verdicts = score(tmp_path, HOSTILE)
    assert set(verdicts) == set(HOSTILE)
    passed = [name for name, (ok, _, _) in verdicts.items() if ok]
    assert passed == [], f"scored as correct: {passed}"
    leaked = [name for name, (_, _, text) in verdicts.items() if SECRET in text]
    assert leaked == [], f"the secret reached the output of {leaked}"
    status = {name: v[1] for name, v in verdicts.items()}
    assert status["infinite_loop"] == status["sleep_forever"] == "timeout"
    assert status["large_output"] == "error"


def test_guard_bypasses_cannot_kill_the_evaluation(tmp_path):
    if not kernel_allows_pid_namespaces():
        pytest.skip("this kernel/user cannot create PID namespaces: only the Python-level guards apply, "
                    "which a deliberate bypass gets around (see docs/tasks.md, limits)")
    verdicts = score(tmp_path, BYPASS)
    assert {name: v[0] for name, v in verdicts.items()} == {name: False for name in BYPASS}


def test_program_runs_as_pid_1_of_its_own_namespace_when_available():
    if not kernel_allows_pid_namespaces():
        pytest.skip("this kernel/user cannot create PID namespaces")
    r = run_program("import os\nassert os.getpid() == 1 and os.getppid() == 0\n"
                    "print(open('/proc/self/status').read().splitlines()[0])\n", timeout=5)
    assert r.passed, r.stderr  # /proc/self stays readable (the guard knows the pid /proc uses)
