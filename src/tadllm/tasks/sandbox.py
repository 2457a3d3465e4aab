"""Run untrusted, model-written Python (plus its unit tests) in a contained child process.

Each program runs in a fresh `sys.executable -I -B` process in its own session (process group), inside a
new temporary directory that is its cwd, HOME and TMPDIR, with a minimal environment (no inherited
variables, so no secrets). Before the program starts, a small runner inside the child:

- sets resource limits: CPU time (RLIMIT_CPU), address space (RLIMIT_AS), size of written files
  (RLIMIT_FSIZE), no core dumps, no new processes (RLIMIT_NPROC = 0; not enforced for root);
- moves itself into a new, empty network namespace and a new PID namespace when the kernel allows it
  (root, or unprivileged user namespaces), so that even raw system calls find no network and no other
  process: the program runs as pid 1 of its own PID namespace (the runner forks once for this and
  mirrors its exit), cannot signal the evaluation that started it, and every process it might start
  dies with it;
- disables, at the Python level: socket creation and name lookups (a local `socketpair` stays
  allowed, for asyncio), process creation (`os.fork`, `os.system`, `exec*`,
  `spawn*`, `subprocess`, `multiprocessing`), signalling other processes (`os.kill`, `os.killpg`),
  leaving the process group, `ctypes`, writes / renames / deletes outside the work directory, and
  reading other processes' `/proc/<pid>` files (e.g. the parent's environment).

The parent enforces a wall-clock timeout, kills the whole process group when done, and reads at most
`max_output_bytes` of each output stream (more is an error: the child is killed). A program passes only
if it runs to its end: the runner then prints a per-run random token that the parent checks, so an early
`os._exit(0)` or `sys.exit(0)` before the tests is a failure. Any escape attempt raises inside the child
and is scored as a failure; nothing a program does raises in, or blocks, the caller.

Limits: the Python-level guards are best effort against accidental or naive misbehaviour (model
outputs), not a security boundary against deliberately adversarial code; reads of ordinary files are
allowed; memory limits are per process. Use a container or VM for untrusted code at scale.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Sequence, Union

__all__ = ["Program", "SandboxResult", "run_program", "run_tests_parallel", "STATUSES"]

STATUSES = ("passed", "failed", "timeout", "error")
_READ_CHUNK = 65536


@dataclass
class Program:
    """A program to run. `source` is executed as the main script; `files` (relative path -> text) are
    written into the work directory first. With `test_file` set, pytest runs that file instead of
    `source` (falling back to calling its `test_*` functions when pytest is not installed)."""

    source: str = ""
    files: dict[str, str] = field(default_factory=dict)
    test_file: str | None = None


@dataclass
class SandboxResult:
    """Outcome of one program. `status` is one of `STATUSES`; `stdout` keeps the head and `stderr` the
    tail of each stream (at most `keep_bytes`)."""

    passed: bool
    status: str
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    returncode: int | None = None


ProgramLike = Union[str, Program]

# The child-side runner, passed with `-c`. It receives its settings as argv[1] (JSON) and the success
# token on stdin, so the token is never in a file the program could read.
_RUNNER = r'''
import builtins, io, json, os, posix, resource, sys

def _limit(res, soft, hard):
    try:
        resource.setrlimit(res, (soft, hard))
    except (ValueError, OSError):
        pass

def _isolate(cfg):
    # New PID and network namespaces where the kernel allows it (root, or unprivileged user namespaces).
    # Returns the libc handle when a PID namespace was made: the runner then forks, and its child, pid 1
    # of the new namespace, runs the program; it cannot see or signal any process outside it (the
    # evaluation that started it included), whatever it does to the Python-level guards.
    NEWNET, NEWPID, NEWUSER = 0x40000000, 0x20000000, 0x10000000
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
    except Exception:
        return None
    net = NEWNET if cfg["isolate_network"] else 0
    for flags in (NEWPID | net, NEWPID | net | NEWUSER):  # + CLONE_NEWUSER when not root
        if libc.unshare(flags) == 0:
            return libc
    for flags in ((net, net | NEWUSER) if net else ()):
        if libc.unshare(flags) == 0:
            break
    return None

def _wait_and_mirror(pid, cfg):
    # The runner's outer half: wait for the program's process and end the way it ended.
    import signal
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        # pid 1 of a namespace ignores SIGXCPU, so the CPU limit ends it with the hard limit's SIGKILL
        if sig == signal.SIGKILL and usage.ru_utime + usage.ru_stime >= cfg["cpu_seconds"]:
            sig = signal.SIGXCPU
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        posix._exit(128 + sig)
    posix._exit(os.waitstatus_to_exitcode(status))

def _setup(cfg):
    _limit(resource.RLIMIT_CORE, 0, 0)
    libc = _isolate(cfg)
    if libc is not None:
        pid = os.fork()
        if pid:
            _wait_and_mirror(pid, cfg)
        libc.prctl(1, 9)  # PR_SET_PDEATHSIG = SIGKILL: dies with the outer half (killed with its group)
    _limit(resource.RLIMIT_CPU, cfg["cpu_seconds"], cfg["cpu_seconds"] + 1)
    if cfg["memory_bytes"]:
        _limit(resource.RLIMIT_AS, cfg["memory_bytes"], cfg["memory_bytes"])
    _limit(resource.RLIMIT_FSIZE, cfg["file_bytes"], cfg["file_bytes"])
    _limit(resource.RLIMIT_NPROC, 0, 0)

def _blocked(what):
    def deny(*args, **kwargs):
        raise PermissionError(f"{what} is blocked by the tadllm sandbox")
    return deny

def _guard(cfg):
    root = os.path.realpath(cfg["workdir"])
    realpath, readlink, fspath, getpid = os.path.realpath, os.readlink, os.fspath, os.getpid
    try:
        own = readlink("/proc/self")  # this process's pid as /proc names it (getpid() is 1 in a new PID ns)
    except OSError:
        own = str(getpid())

    def resolve(path, dir_fd=None):
        if isinstance(path, int):
            return None  # an already-open descriptor
        p = os.fsdecode(fspath(path))
        if dir_fd is not None and not p.startswith("/"):
            p = os.path.join(readlink(f"/proc/self/fd/{dir_fd}"), p)
        return realpath(p)

    def check_write(path, dir_fd=None):
        real = resolve(path, dir_fd)
        if real is not None and real != "/dev/null" and real != root and not real.startswith(root + "/"):
            raise PermissionError(f"writing outside the sandbox directory is blocked: {real}")

    def check_read(path, dir_fd=None):
        real = resolve(path, dir_fd)
        if real is not None and real.startswith("/proc/"):
            pid = real.split("/")[2]
            if pid.isdigit() and pid != own:
                raise PermissionError(f"reading other processes is blocked: {real}")

    def wrap_write(name, npaths):
        orig = getattr(posix, name, None)
        if orig is None:
            return
        def guarded(*args, **kwargs):
            dir_fd = kwargs.get("dir_fd")
            fds = (kwargs.get("src_dir_fd", dir_fd), kwargs.get("dst_dir_fd", dir_fd))
            for i, p in enumerate(args[:npaths]):
                check_write(p, fds[min(i, 1)])
            return orig(*args, **kwargs)
        setattr(os, name, guarded)
        setattr(posix, name, guarded)

    for name in ("remove", "unlink", "rmdir", "mkdir", "truncate", "chmod", "chown", "lchown", "utime",
                 "mkfifo", "mknod", "setxattr", "removexattr", "chflags", "lchflags", "lchmod"):
        wrap_write(name, 1)
    for name in ("rename", "replace", "link", "symlink"):
        wrap_write(name, 2)

    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    os_open = posix.open
    def guarded_os_open(path, flags, mode=0o777, *, dir_fd=None):
        (check_write if flags & write_flags else check_read)(path, dir_fd)
        return os_open(path, flags, mode, dir_fd=dir_fd)
    os.open = posix.open = guarded_os_open

    io_open = io.open
    def guarded_open(file, mode="r", *args, **kwargs):
        (check_write if any(c in mode for c in "wax+") else check_read)(file)
        return io_open(file, mode, *args, **kwargs)
    import _io
    builtins.open = io.open = _io.open = guarded_open

    for name in ("fork", "forkpty", "vfork", "system", "popen", "execv", "execve", "execl", "execle",
                 "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe",
                 "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "kill",
                 "killpg", "setsid", "setpgid", "setpgrp", "pidfd_open", "chroot", "setuid", "seteuid",
                 "setreuid", "setresuid", "setgid", "setegid", "setregid", "setresgid", "unshare", "setns"):
        deny = _blocked(f"os.{name}")
        for mod in (os, posix):
            if hasattr(mod, name):
                setattr(mod, name, deny)
    import _posixsubprocess, signal, socket, _socket, subprocess, importlib
    _posixsubprocess.fork_exec = _blocked("process creation")
    subprocess.Popen = _blocked("subprocess")
    if hasattr(signal, "pidfd_send_signal"):
        signal.pidfd_send_signal = _blocked("signalling processes")
    _block_sockets(socket, _socket)
    importlib.reload = _blocked("importlib.reload")
    for name in ("ctypes", "_ctypes", "ctypes.util", "_ctypes.util"):
        sys.modules[name] = None  # `import ctypes` now raises ImportError

def _block_sockets(socket, _socket):
    # Subclasses, not functions: `class X(socket.socket)` and isinstance checks (ssl, asyncio) keep
    # working. Wrapping an existing descriptor stays allowed, so socket.socketpair() (a local pair, used
    # by asyncio's event loop) works; only new sockets and name lookups are refused.
    import types
    def make(base):
        class NoNetwork(base):
            def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
                if fileno is None:
                    raise PermissionError("network access is blocked by the tadllm sandbox")
                super().__init__(family, type, proto, fileno)
        NoNetwork.__name__ = NoNetwork.__qualname__ = base.__name__
        return NoNetwork
    # socket.py calls `_socket.socket.__init__(self, ...)`: give it a view of the original module
    original = types.ModuleType("_socket")
    original.__dict__.update(_socket.__dict__)
    socket._socket = original
    socket.socket = make(socket.socket)
    socket.SocketType = _socket.socket = _socket.SocketType = make(_socket.socket)
    lookup = _blocked("network access (name lookup)")
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"):
        setattr(socket, name, lookup)
        setattr(_socket, name, lookup)

def _run_tests(test_file):
    try:
        import pytest
    except ImportError:
        pytest = None
    if pytest is not None:
        return pytest.main(["-q", "-x", "-p", "no:cacheprovider", test_file]) == 0
    import importlib.util  # no pytest: call the module's test_* functions
    spec = importlib.util.spec_from_file_location("tests_under_sandbox", test_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in sorted(vars(module)):
        if name.startswith("test") and callable(getattr(module, name)):
            getattr(module, name)()
    return True

def _main():
    cfg = json.loads(sys.argv[1])
    token = sys.stdin.readline().strip().encode()
    write, exit_now = posix.write, posix._exit
    sys.stdin = io.StringIO("")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    _setup(cfg)
    os.chdir(cfg["workdir"])
    sys.path.insert(0, cfg["workdir"])
    if cfg["test_file"]:
        try:
            import pytest  # imported before the guards: its own startup is trusted
        except ImportError:
            pass
    _guard(cfg)
    ok = False
    try:
        if cfg["test_file"]:
            ok = _run_tests(cfg["test_file"])
        else:
            path = os.path.join(cfg["workdir"], cfg["script"])
            with open(path, encoding="utf-8") as f:
                code = compile(f.read(), path, "exec")
            scope = {"__name__": "__sandbox__", "__file__": path, "__builtins__": builtins}
            exec(code, scope)
            ok = True
    except SystemExit as e:
        sys.stderr.write(f"program exited (SystemExit: {e.code!r}) before its tests finished\n")
    except BaseException as e:
        import traceback
        # start the traceback at the program: the runner's own frame is noise
        traceback.print_exception(type(e), e, e.__traceback__.tb_next or e.__traceback__)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    if ok:
        write(1, b"\n" + token + b"\n")
    exit_now(0 if ok else 1)

_main()
'''


def _minimal_env(workdir: str) -> dict[str, str]:
    """The child's whole environment: nothing inherited, so no tokens or keys leak into it."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "TMP": workdir,
        "TEMP": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # BLAS / OpenMP pools would try to start threads, which RLIMIT_NPROC forbids for non-root users
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _write_files(workdir: str, program: Program) -> str:
    """Write the program's files; returns the main script's name."""
    for rel, text in program.files.items():
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise ValueError(f"program file names must be relative paths inside the work dir: {rel!r}")
        target = os.path.join(workdir, *parts)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8", errors="replace") as f:
            f.write(text)
    if program.test_file and "pytest.ini" not in program.files:
        # an ini in the work dir makes it pytest's rootdir: no config from /tmp or / is picked up
        with open(os.path.join(workdir, "pytest.ini"), "w", encoding="utf-8") as f:
            f.write("[pytest]\n")
    script = "program.py"
    with open(os.path.join(workdir, script), "w", encoding="utf-8", errors="replace") as f:
        f.write(program.source)
    return script


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _collect(proc: subprocess.Popen, deadline: float, cap: int) -> tuple[bytes, bytes, str | None]:
    """Read both pipes until EOF and exit, the deadline, or `cap` bytes on a stream.
    Returns (stdout, stderr, problem) with problem None, "timeout" or "output"."""
    out, err = bytearray(), bytearray()
    bufs = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    problem = None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        while sel.get_map() and problem is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                problem = "timeout"
                break
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, _READ_CHUNK)
                if not chunk:
                    sel.unregister(key.fileobj)
                bufs[key.fd] += chunk
                if len(bufs[key.fd]) > cap:
                    problem = "output"
                    break
    if problem is None:
        try:  # both streams closed: wait for the exit, still within the deadline
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            problem = "timeout"
    return bytes(out), bytes(err), problem


def _verdict(returncode: int | None, problem: str | None, found_token: bool) -> tuple[str, str]:
    """(status, note) from how the child ended."""
    if problem == "timeout":
        return "timeout", "wall-clock timeout"
    if problem == "output":
        return "error", "output size limit exceeded"
    if returncode == -signal.SIGXCPU:
        return "timeout", "CPU time limit exceeded"
    if returncode == 0 and found_token:
        return "passed", ""
    if returncode == 0:
        return "failed", "exited before its tests finished"
    if returncode is not None and returncode < 0:
        return "error", f"killed by signal {-returncode}"
    return "failed", ""


def _text(data: bytes, keep: int, tail: bool) -> str:
    data = data[-keep:] if tail else data[:keep]
    return data.decode("utf-8", errors="replace")


def run_program(program: ProgramLike, timeout: float = 10.0, memory_mb: int | None = 2048,
                max_output_bytes: int = 1 << 20, keep_bytes: int = 8192, max_file_mb: int = 64,
                isolate_network: bool = True) -> SandboxResult:
    """Run one program in the sandbox (see the module docstring). Never raises for anything the
    program does; a sandbox failure (e.g. no temp dir) is returned as status "error"."""
    prog = Program(source=program) if isinstance(program, str) else program
    start = time.monotonic()
    workdir = None
    try:
        workdir = tempfile.mkdtemp(prefix="tadllm-sandbox-")
        script = _write_files(workdir, prog)
        cfg = {
            "workdir": os.path.realpath(workdir),
            "script": script,
            "test_file": prog.test_file,
            "cpu_seconds": int(math.ceil(timeout)) + 1,
            "memory_bytes": int(memory_mb * 2**20) if memory_mb else 0,
            "file_bytes": int(max_file_mb * 2**20),
            "isolate_network": isolate_network,
        }
        return _execute(cfg, timeout, max_output_bytes, keep_bytes, start)
    except Exception as e:  # the evaluation must go on whatever happens
        return SandboxResult(False, "error", stderr=f"sandbox error: {e!r}",
                             duration=time.monotonic() - start)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


def _execute(cfg: dict, timeout: float, cap: int, keep: int, start: float) -> SandboxResult:
    token = secrets.token_hex(16)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-B", "-c", _RUNNER, json.dumps(cfg)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=cfg["workdir"], env=_minimal_env(cfg["workdir"]), start_new_session=True, close_fds=True,
    )
    try:
        try:
            proc.stdin.write(f"{token}\n".encode())
            proc.stdin.close()
        except OSError:
            pass  # the child already died; its exit status tells why
        out, err, problem = _collect(proc, start + timeout, cap)
    finally:
        _kill_group(proc.pid)
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            stream.close()
    marker = b"\n" + token.encode() + b"\n"
    found = out.endswith(marker)
    if found:
        out = out[: -len(marker)]
    status, note = _verdict(proc.returncode, problem, found)
    stderr = _text(err, keep, tail=True) + (f"\n[sandbox] {note}" if note else "")
    return SandboxResult(passed=status == "passed", status=status, stdout=_text(out, keep, tail=False),
                         stderr=stderr, duration=time.monotonic() - start, returncode=proc.returncode)


def run_tests_parallel(programs: Sequence[ProgramLike], timeout: float = 10.0, max_workers: int | None = None,
                       **limits) -> list[SandboxResult]:
    """Run programs concurrently (threads driving child processes); results in input order.
    `limits` are passed to `run_program` (memory_mb, max_output_bytes, keep_bytes, ...)."""
    if not programs:
        return []
    workers = max(1, min(len(programs), max_workers or os.cpu_count() or 1))
    if workers == 1:
        return [run_program(p, timeout=timeout, **limits) for p in programs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tadllm-sandbox") as pool:
        return list(pool.map(lambda p: run_program(p, timeout=timeout, **limits), programs))
