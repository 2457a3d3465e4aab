import os
import time

import pytest

from tadllm.tasks.sandbox import Program, SandboxResult, run_program, run_tests_parallel

TIMEOUT = 2.0
SECRET = "tadllm-test-secret-8c1f"

GOOD = "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('ok')\n"


def _run(source, **kw):
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("memory_mb", 512)
    start = time.monotonic()
    result = run_program(source, **kw)
    assert isinstance(result, SandboxResult)
    assert time.monotonic() - start < kw["timeout"] + 3  # never blocks beyond the timeout
    return result


def test_passing_program_passes():
    r = _run(GOOD)
    assert r.passed and r.status == "passed" and r.returncode == 0
    assert r.stdout == "ok\n"  # the success token is not shown
    assert r.duration > 0


def test_failing_assertion_fails():
    r = _run("assert 1 + 1 == 3\n")
    assert not r.passed and r.status == "failed"
    assert "AssertionError" in r.stderr and "program.py" in r.stderr


def test_syntax_error_fails():
    r = _run("def broken(:\n")
    assert r.status == "failed" and "SyntaxError" in r.stderr


@pytest.mark.parametrize("source", ["while True:\n    pass\n", "import time\ntime.sleep(60)\n"])
def test_infinite_loop_times_out(source):
    r = _run(source)
    assert not r.passed and r.status == "timeout"
    assert TIMEOUT - 0.1 <= r.duration < TIMEOUT + 2


def test_memory_bomb_is_contained():
    r = _run("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n", memory_mb=256)
    assert not r.passed and r.status in ("failed", "error")
    assert "MemoryError" in r.stderr


@pytest.mark.parametrize("source", [
    "import os\nwhile True:\n    os.fork()\n",
    "import subprocess\nsubprocess.run(['true'])\n",
    "import os\nos.system('true')\n",
    "import multiprocessing\np = multiprocessing.Process(target=print)\np.start()\np.join()\n",
    "import os\nos.execv('/bin/true', ['true'])\n",
    "import ctypes\nctypes.CDLL(None).fork()\n",
])
def test_process_creation_is_blocked(source):
    r = _run(source)
    assert not r.passed and r.status == "failed"


def test_killing_other_processes_is_blocked():
    r = _run("import os, signal\nos.kill(os.getppid(), signal.SIGTERM)\n")
    assert not r.passed and "blocked" in r.stderr


@pytest.mark.parametrize("isolate_network", [True, False])  # False: the Python-level guard alone
@pytest.mark.parametrize("source", [
    "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\n",
    "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.sendto(b'x', ('1.1.1.1', 53))\n",
    "import urllib.request\nurllib.request.urlopen('http://example.com', timeout=1)\n",
    "import socket\nsocket.gethostbyname('example.com')\n",
    "import _socket\n_socket.socket()\n",
    "import socket\nclass Mine(socket.socket):\n    pass\nMine()\n",
])
def test_network_is_blocked(source, isolate_network):
    r = _run(source, isolate_network=isolate_network)
    assert not r.passed and r.status == "failed"
    assert "blocked" in r.stderr or "unreachable" in r.stderr


def test_local_socketpair_and_asyncio_still_work():
    source = ("import asyncio, socket\n"
              "a, b = socket.socketpair()\na.sendall(b'x')\nassert b.recv(1) == b'x'\n"
              "async def main():\n    await asyncio.sleep(0)\n    return 3\n"
              "assert asyncio.run(main()) == 3\n")
    assert _run(source).passed


def test_network_namespace_when_available():
    r = _run("import os\nprint(os.readlink('/proc/self/ns/net'))\n")
    assert r.passed
    try:
        own = os.readlink("/proc/self/ns/net")
    except OSError:
        pytest.skip("no /proc namespaces here")
    if r.stdout.strip() == own:
        pytest.skip("this kernel/user cannot create network namespaces (Python-level guard only)")
    assert r.stdout.strip().startswith("net:")


@pytest.mark.parametrize("how", [
    "open({path!r}, 'w').write('x')",
    "import pathlib\npathlib.Path({path!r}).write_text('x')",
    "import os\nfd = os.open({path!r}, os.O_WRONLY | os.O_CREAT)\nos.write(fd, b'x')",
    "import shutil\nopen('mine.txt', 'w').write('x')\nshutil.copy('mine.txt', {path!r})",
    "import os\nopen('mine.txt', 'w').write('x')\nos.rename('mine.txt', {path!r})",
    "import os\nos.symlink({outside!r}, 'link')\nopen('link/escaped.txt', 'w').write('x')",
])
def test_writing_outside_the_work_dir_is_blocked(tmp_path, how):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "escaped.txt"
    r = _run(how.format(path=str(target), outside=str(outside)))
    assert not r.passed
    assert not target.exists()


def test_deleting_outside_the_work_dir_is_blocked(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    r = _run(f"import os\nos.remove({str(victim)!r})\n")
    assert not r.passed and victim.read_text() == "precious"


def test_work_dir_is_private_and_writable():
    source = ("import os, tempfile\n"
              "cwd = os.getcwd()\n"
              "assert os.environ['HOME'] == cwd and os.environ['TMPDIR'] == cwd\n"
              "open('scratch.txt', 'w').write('x')\n"
              "with tempfile.TemporaryDirectory() as d:\n"
              "    open(os.path.join(d, 'f'), 'w').write('y')\n"
              "print(cwd)\n")
    first, second = _run(source), _run(source)
    assert first.passed and second.passed
    assert first.stdout != second.stdout  # a fresh directory each run
    assert not os.path.exists(first.stdout.strip())  # removed afterwards


def test_environment_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("TADLLM_TEST_SECRET", SECRET)
    r = _run("import os\nprint(dict(os.environ))\nassert os.environ.get('TADLLM_TEST_SECRET')\n")
    assert not r.passed and SECRET not in r.stdout + r.stderr
    # nor through the parent's /proc entry
    r = _run("import os\nprint(open(f'/proc/{os.getppid()}/environ').read())\n")
    assert not r.passed and SECRET not in r.stdout + r.stderr


def test_huge_output_is_capped():
    r = _run("while True:\n    print('x' * 100000)\n", max_output_bytes=1 << 20, keep_bytes=1000)
    assert not r.passed and r.status == "error" and "output" in r.stderr
    assert len(r.stdout) <= 1000
    r = _run("import sys\nsys.stderr.write('e' * 5_000_000)\n", keep_bytes=100)
    assert not r.passed and len(r.stderr) < 200


def test_filling_the_disk_is_capped():
    r = _run("open('big.bin', 'wb').write(b'x' * (20 * 2**20))\n", max_file_mb=1)
    assert not r.passed and "File too large" in r.stderr


def test_stdin_is_empty():
    assert _run("print(input())\n").status == "failed"


def test_early_exit_is_not_a_pass():
    assert _run("import os\nos._exit(0)\nassert False\n").status == "failed"
    assert _run("import sys\nsys.exit(0)\nassert False\n").status == "failed"
    # a program cannot fake success by printing something token-like
    assert not _run("import os\nos.write(1, b'\\n' + b'0' * 32 + b'\\n')\nos._exit(0)\n").passed


def test_pytest_program():
    tests = ("import pytest\nfrom solution import add\n\n"
             "@pytest.mark.parametrize('a', [1, 2, 3])\ndef test_add(a):\n    assert add(a, 1) == a + 1\n\n"
             "def test_tmp(tmp_path):\n    (tmp_path / 'x').write_text('y')\n")
    good = Program(files={"solution.py": "def add(a, b):\n    return a + b\n", "test_solution.py": tests},
                   test_file="test_solution.py")
    bad = Program(files={"solution.py": "def add(a, b):\n    return a - b\n", "test_solution.py": tests},
                  test_file="test_solution.py")
    no_tests = Program(files={"solution.py": "x = 1\n", "test_solution.py": "x = 2\n"}, test_file="test_solution.py")
    results = run_tests_parallel([good, bad, no_tests], timeout=20, max_workers=3)
    assert [r.status for r in results] == ["passed", "failed", "failed"]


def test_bad_file_names_are_an_error_not_a_crash(tmp_path):
    r = run_program(Program(source="", files={"../escape.py": "x"}), timeout=TIMEOUT)
    assert r.status == "error" and not r.passed


def test_mixed_batch_gets_the_right_verdicts(tmp_path, monkeypatch):
    monkeypatch.setenv("TADLLM_TEST_SECRET", SECRET)
    target = tmp_path / "escaped.txt"
    programs = [
        GOOD,
        "while True:\n    pass\n",
        "import os\nwhile True:\n    os.fork()\n",
        "assert sum(range(10)) == 45\n",
        "import socket\nsocket.socket()\n",
        f"open({str(target)!r}, 'w').write('x')\n",
        "while True:\n    print('spam' * 10000)\n",
        "import os\nassert os.environ['TADLLM_TEST_SECRET']\n",
        "x = []\nwhile True:\n    x.append(bytearray(50 * 2**20))\n",
        "assert 1 == 2\n",
        "print('fine')\n",
    ]
    expected = [True, False, False, True, False, False, False, False, False, False, True]
    start = time.monotonic()
    results = run_tests_parallel(programs, timeout=TIMEOUT, max_workers=4, memory_mb=256)
    assert [r.passed for r in results] == expected
    assert results[1].status == "timeout"
    assert not target.exists()
    assert time.monotonic() - start < 4 * TIMEOUT
    assert run_tests_parallel([], timeout=TIMEOUT) == []
