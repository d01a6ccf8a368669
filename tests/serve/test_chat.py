"""OpenAI-compatible chat routes on a tiny SFT run: the same answer as `tunesmith chat`, the checked
end-of-turn token, stop strings, sampling, server-sent events, usage and refusals."""
from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient

from tests.serve.conftest import wait_until
from tunesmith.serve import create_app

QUESTION = [{"role": "user", "content": "What colour is the sky? (7)"}]
KEY = "chat-key-0123456789abcdef"


@pytest.fixture(scope="module")
def served(chat_run):
    app = create_app(chat_run, max_new_tokens=48)
    with TestClient(app) as client:
        wait_until(lambda: client.get("/health/ready").status_code == 200, "the warm-up")
        yield client, app.state.server.model


def ask(client, chat_run, **extra):
    return client.post("/v1/chat/completions", json={"model": chat_run.name, "messages": QUESTION,
                                                     "temperature": 0, **extra})


def events(response) -> list:
    lines = [l for l in response.text.split("\n\n") if l]
    assert all(l.startswith("data: ") for l in lines), lines
    return [l[6:] if l == "data: [DONE]" else json.loads(l[6:]) for l in lines]


def test_models_route_names_the_run(served, chat_run):
    client, _ = served
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == [chat_run.name]


def test_greedy_completion_is_tunesmith_chats_answer_and_stops_at_the_end_of_turn_token(served, chat_run):
    client, model = served
    r = ask(client, chat_run, max_tokens=48)
    assert r.status_code == 200
    body = r.json()
    model.max_new_tokens = 48
    assert body["choices"][0]["message"] == {"role": "assistant", "content": model.reply(QUESTION)}
    assert body["choices"][0]["message"]["content"].startswith("The sky is blue.")
    # the tuned model ends its turn with <|im_end|> long before max_tokens
    assert body["choices"][0]["finish_reason"] == "stop" and "<|im_end|>" not in r.text
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(model.prompt_ids(QUESTION)) and usage["completion_tokens"] < 48
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["object"] == "chat.completion" and body["model"] == chat_run.name


def test_max_tokens_and_stop_strings_end_the_answer(served, chat_run):
    client, _ = served
    short = ask(client, chat_run, max_tokens=2).json()
    assert short["choices"][0]["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 2
    cut = ask(client, chat_run, stop=[" is", "zzz"]).json()
    assert cut["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": "The sky"},
                                 "finish_reason": "stop"}


def test_sampling_is_repeatable_with_a_seed(served, chat_run):
    client, _ = served
    answers = [ask(client, chat_run, temperature=1.5, seed=s, max_tokens=12).json()["choices"][0]["message"]
               for s in (1, 1, 2, 3)]
    assert answers[0] == answers[1] and len({a["content"] for a in answers}) > 1


def test_a_tiny_temperature_samples_the_greedy_answer(served, chat_run):
    """The fuzzer's finds: temperature 1e-38 overflowed logits / temperature to inf, and a subnormal one
    (2.2e-313) became 0 in float32: both failed with 500."""
    client, _ = served
    greedy = ask(client, chat_run, max_tokens=12).json()
    for temperature in (1.175494351e-38, 2.2250738585e-313, 1e-6):
        tiny = ask(client, chat_run, temperature=temperature, seed=1, max_tokens=12)
        assert tiny.status_code == 200, tiny.text
        assert tiny.json()["choices"][0]["message"] == greedy["choices"][0]["message"]


def test_streaming_sends_the_same_answer_as_server_sent_events(served, chat_run):
    client, _ = served
    plain = ask(client, chat_run, stop=["."]).json()["choices"][0]
    r = ask(client, chat_run, stream=True, stop=["."], stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    out = events(r)
    assert out[-1] == "[DONE]" and out[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    chunks = [e for e in out[1:-1] if e["choices"]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == plain["message"]["content"] == "The sky is blue" and len(chunks) > 2
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert out[-2]["choices"] == [] and out[-2]["usage"]["completion_tokens"] >= 4
    # a stop string that spans tokens: its first part is held back, never sent and then taken back
    spanning = events(ask(client, chat_run, stream=True, stop=["sky is"]))
    pieces = [e["choices"][0]["delta"].get("content", "") for e in spanning[1:-1] if e["choices"]]
    assert "".join(pieces) == ask(client, chat_run, stop=["sky is"]).json()["choices"][0]["message"]["content"] \
        == "The"


@pytest.mark.parametrize("change, status, message", [
    ({"model": "gpt-4"}, 404, "model 'gpt-4' is not served here"),
    ({"messages": []}, 422, "messages: List should have at least 1 item"),
    ({"max_tokens": 49}, 422, "max_tokens: Input should be less than or equal to 48"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 422, "messages[0].role: Input should be"),
    ({"messages": [{"role": "user", "content": "sky " * 300}]}, 422, "passes the model's context of 256 tokens"),
    ({"messages": [{"role": "user", "content": "sky " * 300}], "stream": True}, 422, "passes the model's context"),
])
def test_refusals_use_openais_error_shape(served, chat_run, change, status, message):
    client, _ = served
    r = ask(client, chat_run, **change)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error["message"] and set(error) == {"message", "type", "param", "code"}


def test_chat_runs_have_no_classification_routes(served):
    client, _ = served
    assert client.post("/predict", json={"inputs": "hi"}).status_code == 404
    assert client.get("/health/live").status_code == 200 and client.get("/v2/health/ready").status_code == 200


def test_chat_gets_the_limits_401_429_504_streamed_or_not_and_503_after_shutdown_in_openais_shape(chat_run):
    app = create_app(chat_run, max_new_tokens=4, max_batch=1, max_queue=1, timeout_s=1, api_keys=[KEY])
    server, route = app.state.server, "/v1/chat/completions"
    body, auth = {"model": chat_run.name, "messages": QUESTION, "temperature": 0}, {"Authorization": f"Bearer {KEY}"}

    def openai_error(r, status: int, kind: str) -> str:
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == kind
        return error["message"]

    with TestClient(app) as c:
        wait_until(lambda: c.get("/health/ready").status_code == 200, "the warm-up")
        openai_error(c.post(route, json=body), 401, "authentication_error")
        held, entered, calls = threading.Event(), threading.Event(), []
        complete = server.model.complete

        def held_complete(*args, **kwargs):  # the first generation holds the worker past the timeout
            calls.append(args)
            entered.set()
            held.wait(60)
            return complete(*args, **kwargs)
        server.model.complete = held_complete
        results: dict = {}

        def post(key: str, **extra) -> threading.Thread:
            thread = threading.Thread(target=lambda: results.update({key: c.post(route, json={**body, **extra},
                                                                                    headers=auth)}))
            thread.start()
            return thread
        threads = [post("running")]
        wait_until(entered.is_set, "the first generation")
        threads.append(post("streamed", stream=True))
        wait_until(lambda: server.batcher.depth == 1, "the streamed request to queue")
        shed = c.post(route, json=body, headers=auth)
        assert "retry after" in openai_error(shed, 429, "overloaded") and int(shed.headers["retry-after"]) >= 1
        for t in threads:
            t.join(60)
        assert "no answer within 1 s" in openai_error(results["running"], 504, "timeout")
        assert "no answer within 1 s" in openai_error(results["streamed"], 504, "timeout")  # before any event
        held.set()
    assert len(calls) == 1  # the streamed request timed out in the queue: it never reached the model
    after = TestClient(app).post(route, json=body, headers=auth)  # the lifespan's shutdown closed the queue
    assert "shutting down" in openai_error(after, 503, "unavailable")
