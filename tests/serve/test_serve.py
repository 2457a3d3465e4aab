"""`tad serve` through a real HTTP client (the `openai` package) against the bundled testbed teacher on the CPU:
the same answers as `tad generate`, alone and batched with other requests, streaming, limits, bad input,
overload, disconnects and failures."""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.error
import urllib.request

import openai
import pytest

from servetest import MODEL, PROMPTS, reference, wait_for

FAST = {"policy": "confidence", "threshold": 0.9}  # a second decoding setting (its own group)


def complete(client, prompt, **kwargs):
    return client.completions.create(model=MODEL, prompt=prompt, **kwargs)


def test_models_and_health(served, client):
    url, service, _ = served
    assert [m.id for m in client.models.list().data] == [MODEL]
    with urllib.request.urlopen(f"{url}/health") as resp:
        body = json.loads(resp.read())
    assert body["status"] == "ok" and body["max_batch"] == service.scheduler.max_batch


def test_same_answer_as_generate_alone(teacher, base_config, client):
    text, nfe, n = reference(teacher, base_config, PROMPTS[0])
    assert text == "74+29=103;103*6=618;####618"
    out = complete(client, PROMPTS[0])
    assert out.choices[0].text == text and out.choices[0].finish_reason == "stop"
    usage = out.usage
    assert (usage.completion_tokens, usage.prompt_tokens) == (n, len(PROMPTS[0]))
    assert usage.model_extra["nfe"] == nfe and usage.model_extra["tpf"] == round(n / nfe, 4)
    assert usage.model_extra["latency_s"] > 0
    # chat: the testbed has no chat template, so one user message is the raw prompt (tad generate without --raw)
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPTS[0]}])
    assert chat.choices[0].message.content == text and chat.usage.model_extra["nfe"] == nfe


def test_same_answers_while_other_requests_run(teacher, base_config, served, client):
    """Four requests of different lengths and two decoding settings, admitted into a running batch."""
    _, service, gate = served
    sched = service.scheduler
    fast = dataclasses.replace(base_config, steps=None, **FAST)
    cases = [(p, FAST if i % 2 else {}) for i, p in enumerate(PROMPTS)]
    expected = [reference(teacher, fast if extra else base_config, p)[:2] for p, extra in cases]
    answers = [None] * len(cases)

    def ask(i):
        prompt, extra = cases[i]
        out = complete(client, prompt, extra_body=extra)
        answers[i] = (out.choices[0].text, out.usage.model_extra["nfe"])

    gate.close()  # the first request holds the worker in its first forward while the others queue up
    threads = [threading.Thread(target=ask, args=(0,))]
    threads[0].start()
    gate.entered.wait(10)
    threads += [threading.Thread(target=ask, args=(i,)) for i in range(1, len(cases))]
    for t in threads[1:]:
        t.start()
    wait_for(lambda: sched.num_waiting == len(cases) - 1, what="the other requests to queue")
    gate.open()
    for t in threads:
        t.join(60)
    assert answers == expected
    assert sched.stats["peak_rows"] == len(cases)  # all four were decoding at once
    assert sched.stats["peak_groups"] == 2


def read_stream(stream):
    pieces, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta.content if hasattr(choice, "delta") else choice.text
            if delta:
                pieces.append(delta)
            finish = choice.finish_reason or finish
    return pieces, finish, usage


def test_streaming_reassembles_to_the_whole_answer(teacher, base_config, client):
    text, nfe, _ = reference(teacher, base_config, PROMPTS[2])
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPTS[2]}],
                                            stream=True, stream_options={"include_usage": True})
    pieces, finish, usage = read_stream(stream)
    assert "".join(pieces) == text and finish == "stop"
    assert len(pieces) > 1  # tokens arrive as they become final, not all at the end
    assert usage.model_extra["nfe"] == nfe
    pieces, finish, usage = read_stream(complete(client, PROMPTS[2], stream=True))
    assert "".join(pieces) == text and finish == "stop" and usage is None


def test_max_tokens_and_stop_strings(teacher, base_config, client):
    long_text, long_nfe, _ = reference(teacher, base_config, PROMPTS[3])
    assert len(long_text) > base_config.block_length  # the answer spans both blocks
    short = complete(client, PROMPTS[3], max_tokens=5)
    assert short.choices[0].text == long_text[:5] and short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 5
    assert short.usage.model_extra["nfe"] < long_nfe  # the row retires once its first 5 tokens are final
    text = reference(teacher, base_config, PROMPTS[0])[0]
    stopped = complete(client, PROMPTS[0], stop=[";", "####"])
    assert stopped.choices[0].text == text[: text.index(";")] and stopped.choices[0].finish_reason == "stop"
    pieces, finish, _ = read_stream(complete(client, PROMPTS[0], stop="=103;1", stream=True))
    assert "".join(pieces) == text[: text.index("=103;1")] and finish == "stop"


def test_sampling_with_a_seed_is_what_generate_samples(teacher, base_config, client):
    sampled = dataclasses.replace(base_config, temperature=2.0, seed=3)  # the longest prompt: answers vary
    text = reference(teacher, sampled, PROMPTS[3])[0]
    answers = {complete(client, PROMPTS[3], temperature=2.0, seed=3).choices[0].text for _ in range(2)}
    assert answers == {text}
    others = {complete(client, PROMPTS[3], temperature=2.0, seed=s).choices[0].text for s in (0, 1, 2)}
    assert others != {text}  # the seed is used: other seeds sample other answers


def post(url, path, body: bytes):
    req = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("body, status, words", [
    ({"prompt": ""}, 400, "prompt is empty"),
    ({"prompt": "start 1 add 2", "max_tokens": 65}, 400, "max_tokens 65 exceeds this server's generation length 64"),
    ({"prompt": "start 1 add 2", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": "1" * 193}, 400, "193 tokens; with the 64 generated positions that exceeds the model's 256"),
    ({"prompt": "start 1 add 2", "temperature": -0.5}, 400, "temperature"),
    ({"prompt": "start 1 add 2", "temperature": 2.5}, 400, "temperature"),
    ({"prompt": "start 1 add 2", "n": 2}, 400, "only n=1"),
    ({"prompt": "start 1 add 2", "policy": "entropy"}, 400, "needs a threshold"),
    ({"prompt": "start 1 add 2", "threshold": 0.5}, 400, "set policy too"),
    ({"prompt": [5, 6, 999]}, 400, "outside the vocabulary"),
    ({"prompt": "start 1 add 2", "model": "gpt-4"}, 404, "not served here"),
    ({}, 400, "prompt: Field required"),
])
def test_bad_completion_requests_get_a_clear_4xx(served, body, status, words):
    code, answer = post(served[0], "/v1/completions", json.dumps({"model": MODEL, **body}).encode())
    assert code == status and words in answer["error"]["message"], answer


def test_bad_chat_and_malformed_requests(served):
    url = served[0]
    code, answer = post(url, "/v1/chat/completions", json.dumps({"model": MODEL, "messages": []}).encode())
    assert code == 400 and "messages" in answer["error"]["message"]
    code, answer = post(url, "/v1/chat/completions", json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": ""}]}).encode())
    assert code == 400 and "no content" in answer["error"]["message"]
    turns = [{"role": "user", "content": "start 1 add 2"}, {"role": "assistant", "content": "1+2=3"},
             {"role": "user", "content": "start 2 add 2"}]
    code, answer = post(url, "/v1/chat/completions", json.dumps({"model": MODEL, "messages": turns}).encode())
    assert code == 400 and "no chat template" in answer["error"]["message"]
    code, answer = post(url, "/v1/completions", b"{not json")
    assert code == 400 and "JSON" in answer["error"]["message"]
    # a prompt that fits exactly is accepted (192 + 64 = 256 positions)
    fits = {"model": MODEL, "prompt": "1" * 192, "max_tokens": 1}
    assert post(url, "/v1/completions", json.dumps(fits).encode())[0] == 200


def test_full_queue_answers_503(served, client):
    _, service, gate = served
    sched = service.scheduler
    sched.max_batch, sched.max_queue = 1, 1
    results = {}

    def ask(name):
        results[name] = complete(client, PROMPTS[0]).choices[0].text

    gate.close()
    first = threading.Thread(target=ask, args=("decoding",))
    first.start()
    gate.entered.wait(10)  # the first request holds the only row
    second = threading.Thread(target=ask, args=("queued",))
    second.start()
    wait_for(lambda: sched.num_waiting == 1, what="the second request to queue")
    with pytest.raises(openai.InternalServerError) as err:
        complete(client, PROMPTS[0])
    assert err.value.status_code == 503 and "queue is full" in str(err.value)
    gate.open()
    first.join(60), second.join(60)
    assert results["decoding"] == results["queued"] == "74+29=103;103*6=618;####618"


def test_client_disconnect_mid_stream_frees_its_row(served, client):
    _, service, gate = served
    sched = service.scheduler
    gate.close()
    stream = complete(client, PROMPTS[3], stream=True, max_tokens=64)
    gate.entered.wait(10)
    assert sched.live_rows == 1
    stream.close()  # the client goes away while its row is mid-decoding
    wait_for(lambda: sched.stats["cancel_requests"] == 1, what="the server to notice the disconnect")
    gate.open()
    wait_for(lambda: sched.live_rows == 0, what="the row to be freed")
    assert sched.stats["cancelled"] == 1 and sched.stats["finished"] == 0
    assert complete(client, PROMPTS[0]).choices[0].text == "74+29=103;103*6=618;####618"


def test_client_gone_before_a_whole_response_frees_its_row(served):
    import http.client

    url, service, gate = served
    sched = service.scheduler
    gate.close()
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    conn.request("POST", "/v1/completions", json.dumps({"model": MODEL, "prompt": PROMPTS[3]}),
                 {"Content-Type": "application/json"})
    gate.entered.wait(10)
    conn.close()  # gone without reading the answer
    wait_for(lambda: sched.stats["cancel_requests"] == 1, what="the server to notice the disconnect")
    gate.open()
    wait_for(lambda: sched.live_rows == 0, what="the row to be freed")
    assert sched.stats["cancelled"] == 1 and sched.stats["finished"] == 0


def test_server_keeps_serving_after_failed_requests(served, client):
    _, service, gate = served
    sched = service.scheduler
    encode = service.codec.encode

    def broken_encode(text):
        if "boom" in text:
            raise RuntimeError("tokenizer exploded")
        return encode(text)

    service.codec.encode = broken_encode
    with pytest.raises(openai.InternalServerError, match="tokenizer exploded"):
        complete(client, "start boom")

    make_state = sched.state_factory
    broken = {"steps": 0}

    class StepFails:  # the first state created fails at its first step
        def __init__(self, state):
            self.state = state

        def __getattr__(self, name):
            return getattr(self.state, name)

        def step(self):
            broken["steps"] += 1
            raise RuntimeError("forward failed")

    sched.state_factory = lambda config: StepFails(make_state(config)) if not broken["steps"] else make_state(config)
    with pytest.raises(openai.InternalServerError, match="forward failed"):
        complete(client, PROMPTS[0])
    assert complete(client, PROMPTS[0]).choices[0].text == "74+29=103;103*6=618;####618"
    assert sched.stats["failed"] == 1 and sched.live_rows == 0
