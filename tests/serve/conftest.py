"""Fixtures of the `tad serve` tests: the bundled testbed teacher on the CPU behind a real uvicorn server on
127.0.0.1, an `openai` client pointed at it, and the gate of `servetest.Gate` around the model's forward."""

from __future__ import annotations

import pytest

from servetest import MODEL, Gate, wait_for

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("openai")


@pytest.fixture(scope="session")
def teacher():
    from tadllm.models import load_model
    from tadllm.testbed.quickstart import BUNDLED_TEACHER

    return load_model(BUNDLED_TEACHER, dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def base_config():
    """The server's decoding: two tokens per step (so answers become final over many steps: streaming and
    cancellation have something to watch), stop at EOS."""
    from tadllm.decoding import DecodeConfig

    return DecodeConfig(gen_length=64, block_length=32, policy="low_confidence", steps=32,
                        stop_at_eos=True)


@pytest.fixture(scope="module")
def server(teacher, base_config):
    """(url, service, gate) of a server started for the module."""
    from tadtest import free_port

    from tadllm.serve.app import BackgroundServer, create_app
    from tadllm.serve.cli import build_service

    model, tokenizer, family = teacher
    gate = Gate()
    model.forward = gate.wrap(type(model).forward.__get__(model))
    service = build_service(model, tokenizer, family, base_config, MODEL, max_batch=8, max_queue=16)
    srv = BackgroundServer(create_app(service, shutdown_timeout=5), port=free_port()).start()
    try:
        yield srv.url, service, gate
    finally:
        gate.open()
        srv.stop()
        del model.forward  # the class's forward again, for other modules


@pytest.fixture
def served(server):
    """The module's server, its limits restored and its gate open after each test."""
    url, service, gate = server
    sched = service.scheduler
    limits = sched.max_batch, sched.max_queue, sched.state_factory
    codec_encode = service.codec.encode
    sched.stats.clear()
    yield url, service, gate
    gate.open()
    wait_for(lambda: sched.num_open == 0, what="the server to go idle")
    sched.max_batch, sched.max_queue, sched.state_factory = limits
    service.codec.encode = codec_encode


@pytest.fixture
def client(served):
    from openai import OpenAI

    url = served[0]
    with OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60) as c:
        yield c
