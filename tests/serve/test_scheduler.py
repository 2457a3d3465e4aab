"""The serving scheduler without HTTP (shutdown, grouping) and the text helpers (stop strings, streaming
hold-back)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from servetest import PROMPTS, reference
from tadllm.serve.scheduler import Done, Failed, Job, Scheduler, ShuttingDown, final_prefixes, group_key
from tadllm.serve.text import find_stop, sendable_length, tokens_for_chars


def make_job(teacher, config, prompt, events, **kwargs):
    tokenizer = teacher[1]
    return Job(tokenizer.encode(prompt, add_special_tokens=False), config, config.gen_length, events.append,
               **kwargs)


def scheduler(teacher, **kwargs):
    from tadllm.serve.text import TextCodec

    model, tokenizer, family = teacher
    return Scheduler(model, family, TextCodec(tokenizer, family), **kwargs)


def test_shutdown_finishes_in_flight_requests_then_refuses_new_ones(teacher, base_config):
    sched = scheduler(teacher)
    events = []
    sched.start()
    sched.submit(make_job(teacher, base_config, PROMPTS[1], events))
    sched.shutdown(timeout=60)
    assert not sched._thread.is_alive()
    assert isinstance(events[-1], Done) and events[-1].text == reference(teacher, base_config, PROMPTS[1])[0]
    with pytest.raises(ShuttingDown):
        sched.submit(make_job(teacher, base_config, PROMPTS[0], events))


def test_shutdown_timeout_fails_what_is_left(teacher, base_config):
    sched = scheduler(teacher, max_batch=1)
    make_state = sched.state_factory

    class Slow:  # a state whose steps take 50 ms
        def __init__(self, state):
            self.state = state

        def __getattr__(self, name):
            return getattr(self.state, name)

        def step(self):
            time.sleep(0.05)
            return self.state.step()

    sched.state_factory = lambda config: Slow(make_state(config))
    decoding, waiting = [], []
    sched.start()
    sched.submit(make_job(teacher, base_config, PROMPTS[3], decoding))
    sched.submit(make_job(teacher, base_config, PROMPTS[3], waiting))
    time.sleep(0.1)
    sched.shutdown(timeout=0.2)
    assert not sched._thread.is_alive() and sched.live_rows == 0
    for events in (decoding, waiting):
        assert isinstance(events[-1], Failed) and events[-1].status == 503


def test_final_prefixes_read_together_match_the_state_row_by_row(teacher, base_config):
    from tadllm.decoding import DecodeState

    model, tokenizer, family = teacher
    state = DecodeState(model, family, base_config)
    handles = state.add([tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS])
    for _ in range(12):  # 2 tokens a step: most of the first block
        state.step()
    state.remove(handles.pop(1))  # rows no longer in the order of admission
    expected = {h: state.final_prefix(h) for h in handles}
    assert len({len(v) for v in expected.values()}) > 1  # mid-decoding, prefixes of different lengths
    assert final_prefixes(state, handles, [0] * len(handles)) == {h: v for h, v in expected.items() if v}
    seen = [len(expected[h]) for h in handles]
    seen[0] -= 1  # only the first row has grown since
    assert final_prefixes(state, handles, seen) == {handles[0]: expected[handles[0]]}


def test_group_key_ignores_only_the_seed(base_config):
    assert group_key(base_config) == group_key(dataclasses.replace(base_config, seed=123))
    assert group_key(base_config) != group_key(dataclasses.replace(base_config, temperature=0.5))
    assert group_key(base_config) != group_key(dataclasses.replace(base_config, block_length=16))


def test_stop_strings_and_streaming_hold_back():
    assert find_stop("74+29=103;103*6", [";", "*"]) == 9
    assert find_stop("74+29", [";"]) is None
    assert sendable_length("74+29=10", ["=103;"]) == 5  # "=10" may become the stop string
    assert sendable_length("74+29=11", ["=103;"]) == 8
    assert sendable_length("ab\ufffd", []) == 2  # half of a multi-byte character waits
    assert sendable_length("abc", ["c", "bcd"]) == 1


def test_tokens_for_chars_counts_the_tokens_of_a_cut_answer():
    pieces = ["74", "+", "29", "=", "103"]

    def decode(ids):
        return "".join(pieces[i] for i in ids)

    ids = list(range(len(pieces)))
    assert tokens_for_chars(decode, ids, 0) == 0
    assert tokens_for_chars(decode, ids, 3) == 2
    assert tokens_for_chars(decode, ids, 4) == 3  # "2" is inside the token "29"
    assert tokens_for_chars(decode, ids, 8) == 5


@pytest.mark.parametrize("admit", ["step", "refresh"])
def test_admission_at_a_refresh_shares_its_forward(teacher, base_config, admit):
    """With a KV cache and `admit="refresh"`, a request that arrives mid-block waits for the running row's next
    refresh and joins that forward (one call in that step); with `admit="step"` it joins at once, and its first
    step (a refresh) runs beside the other row's cached forward (two calls). The answers are the same."""
    from torch import nn

    from tadllm.decoding import DecodeState

    model, _, family = teacher
    config = dataclasses.replace(base_config, use_cache="dual", steps=64, stop_at_eos=False)  # 32 steps a block
    calls = []

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.config = model, model.config

        def get_base_model(self):
            return self.inner

        def forward(self, *args, **kwargs):
            calls.append(1)
            return self.inner(*args, **kwargs)

    sched = scheduler(teacher, admit=admit)
    sched.state_factory = lambda cfg: DecodeState(Counting(), family, cfg)
    first, second = [], []
    job_a = make_job(teacher, config, PROMPTS[0], first)
    job_b = make_job(teacher, config, PROMPTS[1], second)
    sched.submit(job_a)
    sched._round()  # A: admitted, its first step (a refresh)
    sched.submit(job_b)
    joined_at = None
    for n in range(2, 200):
        before = len(calls)
        sched._round()
        if joined_at is None and job_b.handle is not None:
            joined_at, calls_then = n, len(calls) - before
        if not (sched._groups or sched._waiting):
            break
    if admit == "step":
        assert (joined_at, calls_then) == (2, 2)
    else:
        assert (joined_at, calls_then) == (33, 1)  # A's block 0 takes 32 steps; step 33 refreshes it
        assert job_b.held == 31
    assert first[-1].text == reference(teacher, config, PROMPTS[0])[0]
    assert second[-1].text == reference(teacher, config, PROMPTS[1])[0]
