"""`tad serve` as a command: options, settings from the checkpoint, no eager import of the web stack, and a
real process that serves a request and shuts down gracefully on SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tadllm.cli import main
from tadllm.testbed.quickstart import BUNDLED_TEACHER

SRC = Path(__file__).resolve().parents[2] / "src"


def test_serve_help_lists_the_server_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--max-batch", "--max-queue", "--model-name", "--port", "--threshold", "--use-cache"):
        assert option in out


def test_lengths_come_from_the_checkpoint_unless_given():
    from tadllm.serve.cli import build_parser, server_config

    args = build_parser().parse_args(["--model", str(BUNDLED_TEACHER)])
    assert (server_config(args).gen_length, server_config(args).block_length) == (64, 32)  # testbed.json
    args = build_parser().parse_args(["--model", str(BUNDLED_TEACHER), "--gen-length", "128", "--block-length", "16"])
    assert (server_config(args).gen_length, server_config(args).block_length) == (128, 16)
    args = build_parser().parse_args(["--model", "/nonexistent"])
    assert server_config(args).gen_length == 256


def test_the_cli_does_not_import_the_web_stack():
    code = "import sys, tadllm.cli, tadllm.serve; assert not {'fastapi', 'uvicorn'} & set(sys.modules), sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(SRC)})


def test_a_served_process_answers_and_stops_gracefully_on_sigint():
    from tadtest import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "tadllm.cli", "serve", "--model", str(BUNDLED_TEACHER), "--device", "cpu",
           "--dtype", "float32", "--port", str(port), "--policy", "confidence", "--threshold", "0.9",
           "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(SRC)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.1)
        body = json.dumps({"model": "testbed-teacher", "prompt": "start 74 add 29 mul 6"}).encode()
        req = urllib.request.Request(f"{url}/v1/completions", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read())["choices"][0]["text"] == "74+29=103;103*6=618;####618"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "gen_length 64, block_length 32" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_flag_a_key_value_and_yaml_parse_alike(tmp_path):
    from tadtest import parsed_three_ways

    from tadllm.serve.cli import ServeArguments, build_parser

    settings = {"host": "0.0.0.0", "port": "9000", "max_batch": "4", "shutdown_timeout": "5", "threads": "none",
                "policy": "confidence", "threshold": "0.9", "gen_length": "64", "log_level": "warning"}
    flags, overrides, from_yaml = parsed_three_ways(build_parser, ["--model", "m"], settings, tmp_path)
    assert flags == overrides == from_yaml
    model, decoding, server = flags
    assert server == ServeArguments(host="0.0.0.0", port=9000, max_batch=4, shutdown_timeout=5.0, log_level="warning")
    assert (model.model, decoding.policy, decoding.threshold, decoding.gen_length) == ("m", "confidence", 0.9, 64)
