"""`tad serve`: load a model and serve it over an OpenAI-compatible HTTP API (docs/serving.md).

    tad serve --model quickstart_out/students/tad-speed-s0 --policy confidence --threshold 0.9

The decoding options are those of `tad generate` and apply to every request (a request may change its
temperature, and policy / threshold / steps / block_length as extra fields). gen_length and block_length
default to what the checkpoint records (a testbed model's testbed.json), else 256 and 32. Every option can
also be given in `--config FILE.yaml` or as `key=value` (flags win).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

FALLBACK_LENGTHS = {"gen_length": 256, "block_length": 32}


@dataclass
class ServeArguments:
    """Where `tad serve` listens and how much it takes on."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on (0.0.0.0: every interface)"})
    port: int = field(default=8000, metadata={"help": "TCP port"})
    max_batch: int = field(default=32, metadata={"help": "rows decoded together at most (all groups)"})
    admit: str = field(default="step", metadata={
        "choices": ["step", "refresh"],
        "help": "when a request joins a running batch: at the next step, or (with a KV cache) at the next step that "
                "refreshes some row, waiting one block at most (docs/serving.md)"})
    max_queue: int = field(default=256, metadata={"help": "requests waiting for a row at most; more get 503"})
    model_name: str | None = field(default=None, metadata={
        "help": "the model id clients send (default: the folder name)"})
    shutdown_timeout: float = field(default=30.0, metadata={
        "help": "seconds in-flight requests may take to finish after SIGINT / SIGTERM"})
    threads: int | None = field(default=None, metadata={
        "help": "torch CPU threads (on a CPU leave a core to the HTTP thread: OpenMP threads spinning on every "
                "core delay responses)"})
    log_level: str = field(default="info", metadata={"help": "uvicorn's log level"})


def build_parser():
    """`tad serve`'s options: `ModelArguments`, `DecodingArguments`, `ServeArguments` (flags, --config, key=value)."""
    from ..cliargs import ConfigParser, add_decoding_args, add_model_args

    p = ConfigParser(prog="tad serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    add_decoding_args(p, FALLBACK_LENGTHS)
    p.add_dataclass(ServeArguments, "server")
    return p


def recorded_lengths(model_path: str) -> dict:
    """gen_length / block_length the checkpoint was made for (a testbed model's testbed.json), if any."""
    meta = Path(model_path) / "testbed.json"
    if not meta.exists():
        return {}
    data = json.loads(meta.read_text())
    return {k: int(data[k]) for k in FALLBACK_LENGTHS if k in data}


def server_config(args):
    """The server's DecodeConfig: the command line, lengths completed from the checkpoint's record."""
    from ..cliargs import decoding_options
    from ..decoding import DecodeConfig

    options = decoding_options(args)
    recorded = recorded_lengths(args.model)
    for key, fallback in FALLBACK_LENGTHS.items():
        if options[key] is None:
            options[key] = recorded.get(key, fallback)
    return DecodeConfig(**options)


def build_service(model, tokenizer, family, config, model_name: str, max_batch: int = 32, max_queue: int = 256,
                  aliases: tuple = (), admit: str = "step"):
    """A `Service` (scheduler not started) for a loaded model; used by `tad serve`, the tests and the bench."""
    from ..decoding.cache import base_model, check_cache_support
    from ..decoding.state import max_positions
    from .scheduler import Scheduler
    from .service import Service
    from .text import TextCodec

    check_cache_support(model, family, config.use_cache)
    base = base_model(model)
    codec = TextCodec(tokenizer, family)
    scheduler = Scheduler(model, family, codec, max_batch=max_batch, max_queue=max_queue, admit=admit)
    vocab = getattr(getattr(base, "config", None), "vocab_size", None)
    return Service(scheduler, codec, config, model_name, max_positions(base), vocab, aliases)


def main_serve(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        import uvicorn

        from .app import create_app
    except ImportError as err:
        parser.error(f"tad serve needs fastapi and uvicorn ({err}): pip install 'tadllm[serve]'")
    from ..cliargs import load_from_args

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        config = server_config(args)
    except ValueError as err:
        parser.error(str(err))
    if args.cuda_graphs and config.use_cache != "none":
        # The graph wrapper keeps the cache's keys/values in buffers of each batch shape it has seen; a server's
        # batch changes shape at every admission, so they would pile up (an 8B model ran out of memory on an H200).
        parser.error("--cuda-graphs with --use-cache prefix/dual is not supported by tad serve (the cached "
                     "keys/values would be kept for every batch shape); use one of the two")
    model, tokenizer, family = load_from_args(args)
    name = args.model_name or Path(args.model).name
    try:
        service = build_service(model, tokenizer, family, config, name, args.max_batch, args.max_queue,
                                aliases=(args.model,), admit=args.admit)
    except ValueError as err:
        parser.error(str(err))
    print(f"[tad serve] {name}: gen_length {config.gen_length}, block_length {config.block_length}, policy "
          f"{config.policy}, max batch {args.max_batch}; http://{args.host}:{args.port}/v1")
    uvicorn.run(create_app(service, args.shutdown_timeout), host=args.host, port=args.port,
                log_level=args.log_level, timeout_graceful_shutdown=args.shutdown_timeout)
    return 0
