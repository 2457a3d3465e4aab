"""The decoding worker of `tad serve`: one thread owns the model and decodes every admitted request in shared
forward passes (continuous batching).

Requests that must share one `DecodeConfig` (the same canvas, policy, threshold, steps, temperature, block
settings and cache; the seed is per row) form a group with one `DecodeState`. Every round the worker
- drops cancelled requests (a client that went away) and frees their rows,
- admits waiting requests, first come first served, into their group's state until `max_batch` rows are live
  (a row decodes the same whether it starts alone or joins a running batch). With `admit="refresh"` a request
  whose group is decoding with a KV cache waits (one block of steps at most) for a step that refreshes some row:
  its own first step is a refresh, so it shares that forward, and the group's rows stay in step (otherwise
  every later block boundary splits a step into a refresh and a cached forward),
- steps each group once (one forward for all its unfinished rows), round-robin,
- retires rows that finished, reached their `max_tokens` or produced a stop string, and tells each request what
  is new through its `sink`: `Delta` (newly final text, streaming requests only), then `Done` or `Failed`.

A failure is contained where it happens: a request that cannot be admitted fails alone, a step that raises
fails the rows of its group only, and the worker goes on serving the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..decoding import DecodeConfig
from .text import find_stop, sendable_length, tokens_for_chars

logger = logging.getLogger(__name__)


@dataclass
class Delta:
    """Text of a streaming request that became final (never taken back)."""
    text: str


@dataclass
class Done:
    text: str
    finish_reason: str  # stop (stop token or stop string) | length (max_tokens or the canvas is full)
    prompt_tokens: int
    completion_tokens: int
    nfe: int
    latency_s: float

    def usage(self) -> dict:
        """OpenAI's usage with tadllm's decoding numbers (forward passes, tokens per forward, seconds)."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens, "nfe": self.nfe,
                "tpf": round(self.completion_tokens / max(self.nfe, 1), 4), "latency_s": round(self.latency_s, 4)}


@dataclass
class Failed:
    status: int
    message: str


ADMIT = ("step", "refresh")  # when a waiting request may join its group's running batch (see the module doc)


class QueueFull(Exception):
    pass


class ShuttingDown(Exception):
    pass


@dataclass
class Job:
    """One request as the worker sees it. `sink` must be callable from the worker thread."""
    prompt: list[int]
    config: DecodeConfig
    max_tokens: int
    sink: Callable[[object], None]
    seed: int = 0
    stops: list[str] = field(default_factory=list)
    stream: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    handle: int | None = None
    seen: int = 0  # final tokens already looked at
    sent: str = ""  # text already streamed
    held: int = 0  # rounds this job waited for a step it could join without an extra forward

    @property
    def watch(self) -> bool:
        """Whether the final prefix must be followed every step (else the row is read once, when it ends)."""
        return self.stream or bool(self.stops) or self.max_tokens < self.config.gen_length


def final_prefixes(state, handles: list[int], seen: list[int]) -> dict[int, list[int]]:
    """`state.final_prefix` of the rows of `handles` whose prefix grew past `seen` (handle -> token ids), read
    from the whole canvas with two host transfers instead of one per row (each a device sync on a GPU)."""
    if not handles:
        return {}
    canvas = state.canvas
    family = state.family
    ends = torch.as_tensor([*family.stop_token_ids, family.mask_token_id], device=canvas.device)
    cut = torch.isin(canvas, ends)
    lengths = torch.where(cut.any(-1), cut.int().argmax(-1), canvas.shape[1]).tolist()
    row_of = {h: i for i, h in enumerate(state.handles)}
    grown = [(h, row_of[h]) for h, n in zip(handles, seen) if lengths[row_of[h]] > n]
    if not grown:
        return {}
    width = max(lengths[i] for _, i in grown)
    rows = canvas[[i for _, i in grown], :width].tolist()
    return {h: row[: lengths[i]] for (h, i), row in zip(grown, rows)}


def group_key(config: DecodeConfig) -> tuple:
    """Requests with equal keys can share forward passes: every DecodeConfig field but the (per-row) seed."""
    return tuple(sorted((k, v) for k, v in config.to_dict().items() if k != "seed"))


@dataclass
class Group:
    state: object  # a tadllm.decoding.DecodeState
    jobs: dict = field(default_factory=dict)  # handle -> Job


class Scheduler:
    """The worker and its queue. `submit`, `cancel` and `shutdown` are called from other threads; everything
    else runs on the worker thread, which alone touches the model and the decoding states."""

    def __init__(self, model, family, codec, max_batch: int = 32, max_queue: int = 256,
                 state_factory: Callable[[DecodeConfig], object] | None = None, admit: str = "step"):
        if max_batch < 1 or max_queue < 0:
            raise ValueError(f"max_batch must be >= 1 and max_queue >= 0 (got {max_batch}, {max_queue})")
        if admit not in ADMIT:
            raise ValueError(f"admit must be one of {', '.join(ADMIT)}, got {admit!r}")
        self.model, self.family, self.codec = model, family, codec
        self.max_batch, self.max_queue, self.admit = max_batch, max_queue, admit
        self.state_factory = state_factory or self._new_state
        self.stats = Counter()
        self.live_rows = 0  # rows in the decoding states, updated by the worker after every change
        self.num_open = 0  # submitted requests without their final event yet
        self._waiting: deque[Job] = deque()
        self._groups: dict[tuple, Group] = {}  # the worker's alone
        self._cv = threading.Condition()
        self._stopping = self._abort = False
        self._thread: threading.Thread | None = None

    def _new_state(self, config: DecodeConfig):
        from ..decoding import DecodeState

        return DecodeState(self.model, self.family, config)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def stopping(self) -> bool:
        return self._stopping

    # ----------------------------------------------------------------- called from the HTTP side

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tad-serve-decoder", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        with self._cv:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"the request queue is full ({len(self._waiting)} waiting, {self.live_rows} "
                                f"decoding); retry later")
            self._waiting.append(job)
            self.num_open += 1
            self._cv.notify()

    def cancel(self, job: Job) -> None:
        """Give up on a request (its client went away): the worker frees its row before the next step."""
        job.cancelled = True
        with self._cv:
            self.stats["cancel_requests"] += 1
            self._cv.notify()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop admitting, let in-flight requests finish for up to `timeout` seconds, fail the rest, join."""
        with self._cv:
            self._stopping = True
            self._cv.notify()
        deadline = time.monotonic() + timeout
        while self.num_open and time.monotonic() < deadline and self._alive():
            time.sleep(0.02)
        with self._cv:
            self._abort = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ----------------------------------------------------------------- the worker thread

    def _run(self) -> None:
        with torch.no_grad():  # grad mode is per thread
            while True:
                try:
                    if not self._round():
                        return
                except Exception as err:  # noqa: BLE001 - a bug here must not leave requests waiting forever
                    logger.exception("the decoding worker failed")
                    self._fail_live(500, f"the decoding worker failed: {type(err).__name__}: {err}")

    def _round(self) -> bool:
        with self._cv:
            while not (self._waiting or self._groups or self._stopping):
                self._cv.wait()
            if self._abort or (self._stopping and not self._waiting and not self._groups):
                admitted = None
            else:
                admitted = self._take_waiting()
        if admitted is None:
            self._fail_waiting(503, "the server is shutting down")
            self._fail_live(503, "the server shut down before this request finished")
            return False
        self._drop_cancelled()
        self._admit(admitted)
        for key in list(self._groups):
            self._step(key)
        self._count_live()
        return True

    def _take_waiting(self) -> list[Job]:
        """Waiting jobs that fit into the batch now (called under the lock)."""
        for job in [j for j in self._waiting if j.cancelled]:
            self._waiting.remove(job)
            self._end(job, None, "cancelled")
        free = self.max_batch - sum(len(g.jobs) for g in self._groups.values())
        taken = []
        for job in list(self._waiting):
            if len(taken) >= free:
                break
            if self._may_join(job):
                self._waiting.remove(job)
                taken.append(job)
            else:
                job.held += 1
        return taken

    def _may_join(self, job: Job) -> bool:
        """`admit="step"`: always. `"refresh"`: when its group has no rows, or its next step costs the new row
        no extra forward (`DecodeState.joins_free`), or the job has waited the steps of one block."""
        group = self._groups.get(group_key(job.config))
        if self.admit == "step" or group is None or job.held >= job.config.block_length:
            return True
        return group.state.joins_free

    def _drop_cancelled(self) -> None:
        for key, group in list(self._groups.items()):
            for handle, job in list(group.jobs.items()):
                if job.cancelled:
                    self._release(key, handle)
                    self._end(job, None, "cancelled")

    def _admit(self, jobs: list[Job]) -> None:
        """Add the jobs to their groups' states, one `add` per group (one re-layout of its batch); when that
        fails, job by job, so that only the job at fault fails."""
        by_key: dict[tuple, list[Job]] = {}
        for job in jobs:
            by_key.setdefault(group_key(job.config), []).append(job)
        for key, batch in by_key.items():
            try:
                self._add(key, batch)
            except Exception:  # noqa: BLE001 - retried one by one below
                for job in batch:
                    self._add_alone(key, job)
        self._count_live()

    def _add(self, key: tuple, jobs: list[Job]) -> None:
        group = self._groups.get(key) or Group(self.state_factory(jobs[0].config))
        handles = group.state.add([j.prompt for j in jobs], [j.seed for j in jobs])
        self._groups[key] = group
        for job, handle in zip(jobs, handles):
            job.handle = handle
            group.jobs[handle] = job
        self.stats["admitted"] += len(jobs)

    def _add_alone(self, key: tuple, job: Job) -> None:
        try:
            self._add(key, [job])
        except Exception as err:  # noqa: BLE001 - this request fails, the others go on
            logger.exception("could not admit a request")
            self._end(job, Failed(500, f"could not start decoding this request: {type(err).__name__}: {err}"))

    def _step(self, key: tuple) -> None:
        group = self._groups[key]
        try:
            finished = set(group.state.step())
            watched = [h for h, job in group.jobs.items() if job.watch and h not in finished]
            prefixes = final_prefixes(group.state, watched, [group.jobs[h].seen for h in watched])
        except Exception as err:  # noqa: BLE001 - the rows of this group fail, other groups go on
            logger.exception("a decoding step failed")
            del self._groups[key]
            self._count_live()
            for job in group.jobs.values():
                self._end(job, Failed(500, f"decoding failed: {type(err).__name__}: {err}"))
            return
        self.stats["steps"] += 1
        for handle, job in list(group.jobs.items()):
            try:
                if handle in finished:
                    self._complete(key, handle, job)
                elif handle in prefixes:
                    self._follow(key, handle, job, prefixes[handle])
            except Exception as err:  # noqa: BLE001 - e.g. a detokenization error: this request only
                logger.exception("a request failed after a step")
                self._release(key, handle)
                self._end(job, Failed(500, f"{type(err).__name__}: {err}"))

    def _follow(self, key: tuple, handle: int, job: Job, prefix: list[int]) -> None:
        """The row's final tokens grew: end it at a stop string or at max_tokens, else stream what is new."""
        ids = prefix[: job.max_tokens]
        if len(ids) <= job.seen:
            return
        job.seen = len(ids)
        text = self.codec.decode(ids)
        if find_stop(text, job.stops) is not None or len(ids) >= job.max_tokens:
            self._finish(key, handle, job, ids, "length")  # `_finish` makes it "stop" when a stop string cut it
            return
        self._stream(job, text[: sendable_length(text, job.stops)])

    def _complete(self, key: tuple, handle: int, job: Job) -> None:
        """The engine finished the row: its answer is the canvas before the first stop token."""
        result = self._groups[key].state.result(handle)
        tokens, n = [int(t) for t in result.tokens], int(result.num_tokens)
        reason = "stop" if n < len(tokens) else "length"
        if n > job.max_tokens:
            n, reason = job.max_tokens, "length"
        self._finish(key, handle, job, tokens[:n], reason)

    def _finish(self, key: tuple, handle: int, job: Job, ids: list[int], reason: str) -> None:
        nfe = int(self._groups[key].state.result(handle).nfe)
        self._release(key, handle)
        text = self.codec.decode(ids)
        cut = find_stop(text, job.stops)
        if cut is not None:
            text, reason = text[:cut], "stop"
            ids = ids[: tokens_for_chars(self.codec.decode, ids, cut)]
        self._end(job, Done(text, reason, len(job.prompt), len(ids), nfe, time.perf_counter() - job.submitted))

    def _stream(self, job: Job, text: str) -> None:
        if job.stream and len(text) > len(job.sent) and text.startswith(job.sent):
            self._send(job, Delta(text[len(job.sent):]))
            job.sent = text

    def _release(self, key: tuple, handle: int) -> None:
        group = self._groups.get(key)
        if group is None or handle not in group.jobs:  # already released (a failure after `_finish`)
            return
        group.state.remove(handle)
        del group.jobs[handle]
        if not group.jobs:
            del self._groups[key]
        self._count_live()  # before the request hears back: its row is free by then

    def _end(self, job: Job, event, stat: str | None = None) -> None:
        """The request's last event (None: its client is gone), counted as finished / failed / `stat`."""
        if event is not None:
            self._send(job, event)
        self.stats[stat or ("finished" if isinstance(event, Done) else "failed")] += 1
        with self._cv:
            self.num_open -= 1

    def _send(self, job: Job, event) -> None:
        try:
            job.sink(event)
        except Exception:  # noqa: BLE001 - the listener is gone (its event loop closed): nothing to tell
            job.cancelled = True

    def _count_live(self) -> None:
        self.live_rows = sum(int(g.state.num_live) for g in self._groups.values())
        self.stats["peak_rows"] = max(self.stats["peak_rows"], self.live_rows)
        self.stats["peak_groups"] = max(self.stats["peak_groups"], len(self._groups))

    def _fail_waiting(self, status: int, message: str) -> None:
        with self._cv:
            waiting, self._waiting = list(self._waiting), deque()
        for job in waiting:
            self._end(job, Failed(status, message))

    def _fail_live(self, status: int, message: str) -> None:
        """End every decoding request; the states are dropped whole (one may be what failed)."""
        groups, self._groups = self._groups, {}
        self._count_live()
        for group in groups.values():
            for job in group.jobs.values():
                self._end(job, Failed(status, message))
