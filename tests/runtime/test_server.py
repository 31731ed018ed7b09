"""The HTTP server on 127.0.0.1 with the real default model, driven by the official ``openai``,
``cerebras-cloud-sdk`` and ``together`` clients: completions, chat, structured output, tools,
streaming, errors with each SDK's exception classes, limits, concurrency, and garbage bodies."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
cerebras_sdk = pytest.importorskip("cerebras.cloud.sdk")
httpx = pytest.importorskip("httpx")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

KEY = "test-key"
MODEL = "smollm2-135m-instruct"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 8}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class _Running:
    def __init__(self, app: Any) -> None:
        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def _start(model: Any, **limits: Any) -> _Running:
    from onrails.runtime.server import ServerLimits, create_app

    return _Running(create_app(model, api_key=KEY, limits=ServerLimits(**limits)))


@pytest.fixture(scope="module")
def server(smollm2_model: Any) -> Iterator[_Running]:
    running = _start(smollm2_model, max_sequences=16, max_queue=64, max_tokens=32)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def oai(server: _Running) -> Any:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def cb(server: _Running) -> Any:
    return cerebras_sdk.Cerebras(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def tg(server: _Running) -> Any:
    """The Together SDK's client (skips its tests alone when the package is absent)."""
    together = pytest.importorskip("together")
    return together.Together(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server: _Running) -> Iterator[Any]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as client:
        yield client


# -- completions ----------------------------------------------------------------------------------


def test_completion_string_prompt_with_n_returns_n_choices_and_usage(oai: Any) -> None:
    out = oai.completions.create(model=MODEL, prompt="The capital of France is", n=2, max_tokens=4, temperature=1, seed=3)
    assert [c.index for c in out.choices] == [0, 1]
    assert all(c.text and c.finish_reason in ("stop", "length") for c in out.choices)
    assert out.object == "text_completion" and isinstance(out.created, int) and out.system_fingerprint
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert out.usage.completion_tokens >= 2  # both choices counted


def test_completion_list_and_token_prompts_answer_each_prompt(oai: Any, smollm2_model: Any) -> None:
    listed = oai.completions.create(model=MODEL, prompt=["One, two,", "Red, green,"], max_tokens=3, temperature=0)
    assert len(listed.choices) == 2
    ids = smollm2_model.encode("One, two,")
    tokens = oai.completions.create(model=MODEL, prompt=ids, max_tokens=3, temperature=0)
    assert tokens.choices[0].text == listed.choices[0].text  # same prompt, greedy: same text
    assert tokens.usage.prompt_tokens == len(ids)


def test_completion_echo_and_logprobs_cover_prompt_and_output(oai: Any) -> None:
    out = oai.completions.create(model=MODEL, prompt="Hello there", echo=True, logprobs=2, max_tokens=3, temperature=0)
    choice = out.choices[0]
    assert choice.text.startswith("Hello there")
    lp = choice.logprobs
    assert lp.token_logprobs[0] is None and len(lp.tokens) == out.usage.prompt_tokens + out.usage.completion_tokens
    assert all(len(top) <= 2 for top in lp.top_logprobs[1:])


def test_completion_stop_string_ends_the_text_before_it(oai: Any) -> None:
    out = oai.completions.create(
        model=MODEL, prompt="Count: 1, 2, 3,", max_tokens=16, temperature=0, stop=[","], extra_body={"grammar": 'start: (" " /[0-9]/ ",")+'}
    )
    assert "," not in out.choices[0].text and out.choices[0].finish_reason == "stop"


def test_completion_grammar_root_in_extra_body_yields_that_json(oai: Any) -> None:
    out = oai.completions.create(model=MODEL, prompt="Some numbers:", max_tokens=16, temperature=0, extra_body={"grammar_root": "array"})
    assert isinstance(json.loads(out.choices[0].text), list)


def test_cerebras_return_raw_tokens_gives_ids_and_empty_text(cb: Any, smollm2_model: Any) -> None:
    out = cb.completions.create(model=MODEL, prompt="A list:", max_tokens=8, temperature=0, grammar_root="array", return_raw_tokens=True)
    choice = out.choices[0]
    assert choice.text == "" and choice.tokens and all(isinstance(t, int) for t in choice.tokens)
    assert isinstance(json.loads(smollm2_model.tokenizer.decode(choice.tokens)), list)


# -- chat ------------------------------------------------------------------------------------------


def test_chat_json_object_reply_is_a_json_object(oai: Any) -> None:
    out = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Describe a cat in JSON"}], response_format={"type": "json_object"}, max_tokens=24, temperature=0
    )
    assert isinstance(json.loads(out.choices[0].message.content), dict)
    assert out.object == "chat.completion" and out.choices[0].message.role == "assistant"


def test_cerebras_chat_json_schema_reply_validates(cb: Any) -> None:
    out = cb.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "A person as JSON"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
        max_completion_tokens=32,
        temperature=0,
    )
    jsonschema.validate(json.loads(out.choices[0].message.content), PERSON)
    assert out.time_info is not None and out.time_info.total_time > 0


@pytest.mark.parametrize(
    "choice",
    ["required", {"type": "function", "function": {"name": "get_time"}}],
    ids=["required", "named"],
)
def test_tool_choice_that_forces_a_call_returns_valid_tool_calls(oai: Any, choice: Any) -> None:
    out = oai.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER, TIME], tool_choice=choice, max_tokens=32, temperature=0)
    c = out.choices[0]
    assert c.finish_reason == "tool_calls" and c.message.tool_calls and c.message.content is None
    for call in c.message.tool_calls:
        assert call.id.startswith("call_") and call.type == "function"
        tool = {"get_weather": WEATHER, "get_time": TIME}[call.function.name]
        jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])
    if isinstance(choice, dict):
        assert {call.function.name for call in c.message.tool_calls} == {"get_time"}


def test_tool_choice_none_answers_in_text(oai: Any) -> None:
    out = oai.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="none", max_tokens=8, temperature=0)
    assert out.choices[0].message.tool_calls is None and out.choices[0].message.content


def test_tool_choice_auto_gives_either_calls_or_text(cb: Any) -> None:
    out = cb.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="auto", max_completion_tokens=32, temperature=0)
    message = out.choices[0].message
    if message.tool_calls:
        assert out.choices[0].finish_reason == "tool_calls"
        jsonschema.validate(json.loads(message.tool_calls[0].function.arguments), WEATHER["function"]["parameters"])
    else:
        assert message.content is not None and not message.content.lstrip().startswith("[")


# -- models, health, warming, openapi -------------------------------------------------------------


def test_models_list_and_retrieve_name_the_served_model(oai: Any, cb: Any) -> None:
    assert [m.id for m in oai.models.list().data] == [MODEL]
    assert oai.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("no-such-model")
    with pytest.raises(cerebras_sdk.NotFoundError):
        cb.models.retrieve("no-such-model")


def test_health_tcp_warming_and_openapi_answer_without_generation(server: _Running) -> None:
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    started = time.perf_counter()
    assert httpx.get(server.url + "/v1/tcp_warming").status_code == 200
    assert time.perf_counter() - started < 1.0
    schemas = httpx.get(server.url + "/openapi.json").json()["components"]["schemas"]
    assert "temperature" in schemas["ChatCompletionRequest"]["properties"]
    assert "prompt" in schemas["CompletionRequest"]["properties"]


# -- errors ----------------------------------------------------------------------------------------


def test_invalid_parameters_raise_each_sdks_bad_request_error(oai: Any, cb: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL, messages=ASK, temperature=2.5, max_tokens=4)
    assert caught.value.status_code == 400 and caught.value.body["param"] == "temperature"
    with pytest.raises(cerebras_sdk.BadRequestError) as cerebras_caught:
        cb.completions.create(model=MODEL, prompt="x", grammar_root="nonsense", max_tokens=4)
    assert "grammar_root" in str(cerebras_caught.value)
    with pytest.raises(openai.BadRequestError, match="schema"):
        oai.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=4,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}},
        )
    with pytest.raises(openai.BadRequestError, match="grammar"):
        oai.completions.create(model=MODEL, prompt="x", max_tokens=4, extra_body={"grammar": "start: undefined_rule"})


def test_cerebras_sdk_fields_are_taken_over_http(cb: Any) -> None:
    """Fields of the Cerebras SDK's signatures that used to get a 400: prompt_cache_key on
    completions; min_completion_tokens (holding the end back), reasoning_effort and
    service_tier on chat."""
    text = cb.completions.create(model=MODEL, prompt="Hi", max_tokens=3, temperature=0, prompt_cache_key="k1")
    assert text.choices[0].finish_reason in ("stop", "length")
    chat = cb.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Yes?"}],
        max_tokens=8,
        temperature=0,
        min_completion_tokens=4,
        reasoning_effort="low",
        service_tier="auto",
        prompt_cache_key="k2",
        extra_body={"grammar": 'start: "yes" (" yes")*'},
    )
    assert chat.usage.completion_tokens >= 4 and chat.choices[0].message.content.startswith("yes yes")


def test_together_min_p_on_completions_keeps_only_the_top_token_at_temperature_2(tg: Any, oai: Any) -> None:
    """The Together SDK's min_p used to get a 400: min_p 1 turns hot sampling into the greedy
    text, and the same seeds without it wander off; out of range it is a 400 naming min_p."""
    completion = {"model": MODEL, "prompt": "Three fruits are", "max_tokens": 8}
    greedy = oai.completions.create(**completion, temperature=0).choices[0].text
    hot = dict(completion, temperature=2, n=3, seed=5)
    assert {c.text for c in tg.completions.create(**hot, min_p=1.0).choices} == {greedy}
    assert any(c.text != greedy for c in tg.completions.create(**hot, min_p=0.0).choices)
    with pytest.raises(pytest.importorskip("together").BadRequestError) as caught:
        tg.completions.create(**completion, min_p=1.5)
    assert caught.value.body["error"]["param"] == "min_p"


def test_temperature_two_is_accepted(oai: Any) -> None:
    out = oai.completions.create(model=MODEL, prompt="Hi", temperature=2, max_tokens=2, seed=1)
    assert out.choices[0].finish_reason in ("stop", "length")


def test_wrong_or_missing_key_is_an_authentication_error(server: _Running) -> None:
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.completions.create(model=MODEL, prompt="x", max_tokens=2)
    bad_cb = cerebras_sdk.Cerebras(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(cerebras_sdk.AuthenticationError):
        bad_cb.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=2)
    assert httpx.post(server.url + "/v1/completions", json={"prompt": "x"}).status_code == 401


def test_unknown_model_is_not_found(oai: Any, cb: Any) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.completions.create(model="gpt-9", prompt="x", max_tokens=2)
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(cerebras_sdk.NotFoundError):
        cb.chat.completions.create(model="gpt-9", messages=ASK, max_completion_tokens=2)


def test_error_bodies_have_openai_shape_and_status(http: Any) -> None:
    def error(response: Any, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.text
        body = response.json()["error"]
        assert set(body) == {"message", "type", "param", "code"}
        return body  # type: ignore[no-any-return]

    assert error(http.get("/v1/nothing-here"), 404)["type"] == "not_found_error"
    error(http.post("/v1/completions", content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert error(http.post("/v1/completions", json={"model": MODEL}), 400)["param"] == "prompt"
    assert error(http.post("/v1/completions", json={"prompt": "x", "n": "2"}), 400)["param"] == "n"
    assert error(http.post("/v1/chat/completions", json={"messages": [{"role": "robot", "content": "x"}]}), 400)["param"] == "messages[0].role"
    assert error(http.post("/v1/completions", json={"prompt": "x", "frobnicate": 1}), 400)["param"] == "frobnicate"
    assert error(http.post("/v1/completions", json={"prompt": "x", "max_tokens": 33}), 400)["param"] == "max_tokens"
    assert error(http.post("/v1/completions", json={"prompt": "x", "n": 17}), 400)["param"] == "n"
    error(http.post("/v1/completions", content=b"x" * (2 << 20), headers={"content-type": "application/json"}), 413)


def test_deeply_nested_constraints_get_a_400_and_the_connection_stays_usable(http: Any) -> None:
    """A schema or tool parameters 100 objects deep, or a Lark grammar of 500 nested groups,
    used to end in a RecursionError: a 500 and a reset connection. Now a 400 naming the
    parameter and the limit, on the same keep-alive connection as the next good request."""
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(100):
        deep = {"type": "object", "properties": {"a": deep}}
    chat = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    cases = [
        {**chat, "response_format": {"type": "json_schema", "json_schema": {"name": "d", "schema": deep}}},
        {**chat, "tools": [{"type": "function", "function": {"name": "f", "parameters": deep}}], "tool_choice": "required"},
    ]
    for body in cases:
        started = time.monotonic()
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, response.text
        assert "128 levels" in response.json()["error"]["message"]
        assert response.json()["error"]["param"]
        assert time.monotonic() - started < 1
    grammar = {"prompt": "x", "max_tokens": 2, "grammar": "start: " + "(" * 500 + '"a"' + ")" * 500}
    response = http.post("/v1/completions", json=grammar)
    assert response.status_code == 400 and "nests too deeply" in response.json()["error"]["message"], response.text
    assert http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code == 200


# -- limits, cancellation, concurrency -------------------------------------------------------------


def test_limits_full_queue_429_time_limit_and_compile_budget(smollm2_model: Any) -> None:
    tight = _start(smollm2_model, max_sequences=1, max_queue=1, max_tokens=32, request_timeout_s=1.0, compile_budget_s=1e-6)
    try:
        slow = {"prompt": "x", "max_tokens": 2, "grammar": f'start: "a"+ "{time.time_ns()}"'}
        refused = httpx.post(tight.url + "/v1/completions", json=slow, headers={"Authorization": f"Bearer {KEY}"})
        assert refused.status_code == 400 and "budget" in refused.json()["error"]["message"]
        body = {"prompt": "Count: 1, 2,", "max_tokens": 32, "temperature": 0, "min_tokens": 32}
        with httpx.Client(base_url=tight.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                responses = list(pool.map(lambda _: client.post("/v1/completions", json=body), range(4)))
        statuses = sorted(r.status_code for r in responses)
        assert 429 in statuses and 200 in statuses and set(statuses) <= {200, 429}
        for r in responses:
            if r.status_code == 429:
                assert r.json()["error"]["code"] == "queue_exceeded"
            else:
                # The 1 s limit ends each request long before its 32 tokens.
                assert r.json()["choices"][0]["finish_reason"] == "length"
                assert r.json()["usage"]["completion_tokens"] < 32
    finally:
        tight.stop()


def _slow_grammar() -> dict[str, Any]:
    # Each call a new grammar (no cache hit) whose case-insensitive terminal takes the slow
    # automaton route for many seconds past any small budget.
    grammar = f"start: /(a{{1,1000}}){{1,1000}}/i\n// {time.time_ns()}\n"
    return {"prompt": "x", "max_tokens": 8, "grammar": grammar}


def _schema_chat(schema: dict[str, Any]) -> dict[str, Any]:
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    return {"messages": ASK, "max_tokens": 8, "response_format": fmt}


def test_slow_compiles_neither_delay_other_requests_nor_outlive_their_budget(smollm2_model: Any) -> None:
    """Two compiles over their 5 s budget run in compile processes: each is refused with a 400
    within the budget + 10%, and a plain request meanwhile takes at most 1.5x its time alone
    (in threads, two such compiles made it 47x slower)."""
    budget = 5.0
    running = _start(smollm2_model, max_tokens=32, compile_budget_s=budget)
    plain = {"prompt": "Count: 1, 2,", "max_tokens": 16, "temperature": 0, "min_tokens": 16}
    try:
        with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
            def timed(body: dict[str, Any], path: str = "/v1/completions") -> tuple[float, Any]:
                start = time.perf_counter()
                response = client.post(path, json=body)
                return time.perf_counter() - start, response

            alone = sorted(timed(plain)[0] for _ in range(3))[1]
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                slow = [pool.submit(timed, _slow_grammar()) for _ in range(2)]
                time.sleep(0.3)
                during = []
                while len(during) < 3:
                    seconds = timed(plain)[0]
                    if any(f.done() for f in slow):
                        break
                    during.append(seconds)
                assert during, ("no plain request ended while the slow compiles ran", alone)
                for future in slow:
                    seconds, response = future.result()
                    assert response.status_code == 400 and "budget" in response.json()["error"]["message"], response.text
                    assert response.json()["error"]["param"] == "grammar"
                    assert seconds <= budget * 1.1 + 0.3, seconds  # + the request's own HTTP and planning
        assert statistics.median(during) <= 1.5 * alone, (during, alone)
    finally:
        running.stop()


def test_a_full_compile_queue_is_a_429_with_retry_after_while_cached_grammars_are_served(smollm2_model: Any) -> None:
    running = _start(smollm2_model, max_tokens=32, compile_budget_s=3.0, compile_processes=1, max_waiting_compiles=1)
    try:
        with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
            object_root = {"prompt": "JSON:", "max_tokens": 8, "grammar_root": "object"}
            assert client.post("/v1/completions", json=object_root).status_code == 200  # now cached
            with concurrent.futures.ThreadPoolExecutor(3) as pool:
                slow = [pool.submit(client.post, "/v1/completions", json=_slow_grammar()) for _ in range(2)]
                time.sleep(0.5)  # one compiling, one waiting for the process
                refused = client.post("/v1/completions", json=_slow_grammar())
                cached = client.post("/v1/completions", json=object_root)
                statuses = [f.result().status_code for f in slow]
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(refused.headers["Retry-After"]) <= 3
        assert cached.status_code == 200
        # The one running is over its budget; the one waiting got the process in time (and is
        # over its budget too) or waited its whole budget for it (a busy server: 429).
        assert sorted(statuses) in ([400, 400], [400, 429]), statuses
    finally:
        running.stop()


def test_server_limits_bound_the_grammar_and_prefix_caches_and_are_given_back_at_shutdown(smollm2_model: Any) -> None:
    compiler = smollm2_model.compiler
    before = (compiler.cache_bytes, smollm2_model.prefix_cache_bytes, compiler.processes, compiler.budget_s)
    running = _start(smollm2_model, grammar_cache_bytes=16 << 20, prefix_cache_bytes=1 << 20, compile_processes=1,
                     max_waiting_compiles=3, compile_budget_s=7.0)
    try:
        assert (compiler.cache_bytes, smollm2_model.prefix_cache_bytes) == (16 << 20, 1 << 20)
        assert (compiler.processes, compiler.budget_s) == ((1, 3), 7.0)
        with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
            for i in range(6):
                schema = {"type": "object", "properties": {f"k{i}": {"type": "integer"}}, "required": [f"k{i}"]}
                assert client.post("/v1/chat/completions", json=_schema_chat(schema)).status_code == 200
        assert compiler.memory_bytes() <= 16 << 20
    finally:
        running.stop()
    assert (compiler.cache_bytes, smollm2_model.prefix_cache_bytes, compiler.processes, compiler.budget_s) == before


def test_a_client_that_disconnects_has_its_sequences_cancelled(server: _Running) -> None:
    body = {"prompt": "Count: 1, 2,", "max_tokens": 32, "min_tokens": 32, "temperature": 0}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/completions", json=body)
    deadline = time.monotonic() + 3.0
    while httpx.get(server.url + "/health").json()["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(server.url + "/health").json()["running"] == 0


def test_a_short_request_joins_a_running_batch_and_finishes_first(http: Any) -> None:
    long_body = {"prompt": "Count: 1, 2,", "max_tokens": 32, "min_tokens": 32, "temperature": 0}
    short_body = {"prompt": "Hi", "max_tokens": 2, "min_tokens": 2, "temperature": 0}
    finished: dict[str, float] = {}

    def post(name: str, body: dict[str, Any]) -> None:
        assert http.post("/v1/completions", json=body).status_code == 200
        finished[name] = time.perf_counter()

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        long_done = pool.submit(post, "long", long_body)
        while not httpx.get(http.base_url.join("/health")).json()["running"]:
            time.sleep(0.02)
        pool.submit(post, "short", short_body).result()
        long_done.result()
    # Request-level batching would make the short request wait for the long one.
    assert finished["short"] < finished["long"]


def test_greedy_output_is_the_same_alone_or_joining_a_batch(oai: Any, http: Any, smollm2_model: Any) -> None:
    from onrails.runtime.client import Client

    request = {"messages": [{"role": "user", "content": "A fruit as JSON"}], "max_tokens": 12, "temperature": 0,
               "response_format": {"type": "json_object"}}
    alone = Client(smollm2_model).chat.completions.create(**request).choices[0].message.content
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        long_done = pool.submit(http.post, "/v1/completions", json={"prompt": "Count: 1, 2,", "max_tokens": 32, "min_tokens": 32})
        while not httpx.get(http.base_url.join("/health")).json()["running"]:
            time.sleep(0.02)
        joined = oai.chat.completions.create(model=MODEL, **request).choices[0].message.content
        assert long_done.result().status_code == 200
    assert joined == alone


def test_a_request_the_decoder_refuses_fails_alone_while_the_batch_goes_on(smollm2_model: Any) -> None:
    import asyncio

    from onrails.errors import OnRailsError
    from onrails.runtime._batching import Scheduler
    from onrails.runtime.generation import SequenceRequest, Timing
    from onrails.runtime.sampling import SamplingParams

    scheduler = Scheduler(smollm2_model, max_sequences=4, max_queue=4)
    prompt = smollm2_model.encode("Count: 1, 2,")

    async def scenario() -> None:
        running = scheduler.submit([SequenceRequest(prompt, SamplingParams(max_tokens=6, min_tokens=6, temperature=0))], Timing())
        while not scheduler.running:
            await asyncio.sleep(0.01)
        broken = SequenceRequest(prompt, SamplingParams(max_tokens=2), smollm2_model.builtin_grammar(), "no_such_root")
        with pytest.raises(OnRailsError, match="no_such_root"):
            await scheduler.submit([broken], Timing()).result()
        (result,) = await running.result()
        assert len(result.token_ids) == 6 and result.finished

    try:
        asyncio.run(scenario())
    finally:
        scheduler.close()


def test_sixteen_concurrent_streamed_and_plain_requests_with_different_grammars_all_complete_valid(oai: Any) -> None:
    def chat_text(stream: bool, **params: Any) -> Any:
        if not stream:
            return oai.chat.completions.create(model=MODEL, **params).choices[0].message
        # OpenAI's stream helper assembles the content and the tool calls' argument fragments
        with oai.chat.completions.stream(model=MODEL, **params) as events:
            return events.get_final_completion().choices[0].message

    def one(i: int) -> None:
        kind, stream = i % 4, i % 8 >= 4
        sampling = {"temperature": 0.7, "seed": i}
        if kind == 0:
            if stream:
                pieces = oai.completions.create(model=MODEL, prompt=f"Numbers from {i}:", max_tokens=12, stream=True, extra_body={"grammar_root": "array"}, **sampling)
                text = "".join(c.choices[0].text for c in pieces if c.choices)
            else:
                text = oai.completions.create(model=MODEL, prompt=f"Numbers from {i}:", max_tokens=12, extra_body={"grammar_root": "array"}, **sampling).choices[0].text
            assert isinstance(json.loads(text), list)
        elif kind == 1:
            message = chat_text(
                stream, messages=[{"role": "user", "content": f"Person number {i}"}], max_tokens=32,
                response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}, **sampling,
            )
            jsonschema.validate(json.loads(message.content), PERSON)
        elif kind == 2:
            message = chat_text(stream, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=32, **sampling)
            jsonschema.validate(json.loads(message.tool_calls[0].function.arguments), WEATHER["function"]["parameters"])
        else:
            message = chat_text(stream, messages=[{"role": "user", "content": f"Object {i}"}], max_tokens=16, response_format={"type": "json_object"}, **sampling)
            assert isinstance(json.loads(message.content), dict)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for future in [pool.submit(one, i) for i in range(16)]:
            future.result()


def test_hostile_requests_in_a_concurrent_load_get_4xx_or_valid_outputs_and_the_rest_stay_valid(smollm2_model: Any) -> None:
    """Deep nesting, an over-budget grammar, a huge enum and a pattern that backtracking engines
    take exponential time on, sent among normal requests: each hostile one is served correctly
    or refused with a 4xx within the wait for a compile process and the compile budget (they
    share the processes, so a refusal may be the budget's rather than their own), never a 5xx,
    and every normal output is valid."""
    budget = 3.0
    running = _start(smollm2_model, max_tokens=32, compile_budget_s=budget)
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(100):
        deep = {"type": "object", "properties": {"a": deep}}
    words = [f"w{i:05d}" for i in range(10_000)]
    redos = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}, "required": ["s"]}
    hostile = [
        ("/v1/chat/completions", _schema_chat(deep)),
        ("/v1/completions", {"prompt": "x", "max_tokens": 4, "grammar": "start: " + "(" * 500 + '"a"' + ")" * 500}),
        ("/v1/completions", _slow_grammar()),
        ("/v1/chat/completions", _schema_chat({"enum": words})),
        ("/v1/chat/completions", _schema_chat(redos)),
    ]
    try:
        with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as client:
            def send(path: str, body: dict[str, Any]) -> tuple[float, Any]:
                start = time.perf_counter()
                response = client.post(path, json=body)
                for _ in range(5):  # a busy server: retry as the SDKs do
                    if response.status_code != 429:
                        break
                    time.sleep(float(response.headers["Retry-After"]))
                    response = client.post(path, json=body)
                return time.perf_counter() - start, response

            normal = [_schema_chat(PERSON) | {"max_tokens": 32, "seed": i, "temperature": 0.7} for i in range(6)]
            with concurrent.futures.ThreadPoolExecutor(11) as pool:
                bad = [pool.submit(send, path, body) for path, body in hostile]
                good = [pool.submit(send, "/v1/chat/completions", body) for body in normal]
                for (path, body), future in zip(hostile, bad):
                    seconds, response = future.result()
                    assert response.status_code < 500, response.text
                    # A refusal comes within the wait for a process plus the compile: two budgets.
                    assert response.status_code in (200, 429) or seconds <= 2 * budget * 1.1 + 0.5, (seconds, response.text)
                    if response.status_code == 200:
                        content = response.json()["choices"][0]["message"]["content"]
                        schema = body["response_format"]["json_schema"]["schema"]
                        jsonschema.validate(json.loads(content), schema)
                    else:
                        assert 400 <= response.status_code < 500 and response.json()["error"]["message"]
                for future in good:
                    _, response = future.result()
                    assert response.status_code == 200, response.text
                    jsonschema.validate(json.loads(response.json()["choices"][0]["message"]["content"]), PERSON)
            statuses = [f.result()[1].status_code for f in bad]
            assert statuses[:3] == [400, 400, 400] and set(statuses[3:]) <= {200, 400}, statuses
            after = client.post("/v1/completions", json={"prompt": "JSON:", "max_tokens": 8, "grammar_root": "object"})
            assert after.status_code == 200
    finally:
        running.stop()


# -- streaming -------------------------------------------------------------------------------------


def _frames(http: Any, path: str, body: dict[str, Any]) -> list[Any]:
    """The SSE frames of a stream, checking the framing: data lines only, one [DONE] at the end."""
    with http.stream("POST", path, json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e for e in events), text
    payloads = [e[len("data: "):] for e in events]
    assert payloads[-1] == "[DONE]" and payloads.count("[DONE]") == 1
    return [json.loads(p) for p in payloads[:-1]]


def _check_envelope(chunk: dict[str, Any], kind: str) -> None:
    assert chunk["object"] == kind and chunk["id"] and chunk["model"] == MODEL
    assert isinstance(chunk["created"], int) and isinstance(chunk["system_fingerprint"], str)


def test_chat_stream_sends_role_first_then_content_then_usage(http: Any, oai: Any) -> None:
    body = {"messages": [{"role": "user", "content": "A dog as JSON"}], "max_tokens": 16, "temperature": 0,
            "response_format": {"type": "json_object"}, "stream_options": {"include_usage": True}}
    chunks = _frames(http, "/v1/chat/completions", body)
    for chunk in chunks:
        _check_envelope(chunk, "chat.completion.chunk")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["choices"][0]["delta"].get("role") is None for c in chunks[1:] if c["choices"])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert isinstance(json.loads(text), dict)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    # The official client reads the same stream into the same text.
    stream = oai.chat.completions.create(model=MODEL, stream=True, **{k: v for k, v in body.items() if k != "stream_options"})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text


def test_cerebras_chat_stream_chunks_parse_as_chunks(cb: Any) -> None:
    stream = cb.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=8, temperature=0, stream=True)
    chunks = list(stream)
    assert chunks and all(type(c).__name__ == "ChatChunkResponse" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_streamed_completion_raw_tokens_are_per_chunk_token_deltas(cb: Any, http: Any) -> None:
    whole = cb.completions.create(model=MODEL, prompt="A list:", max_tokens=8, temperature=0, grammar_root="array", return_raw_tokens=True)
    chunks = _frames(http, "/v1/completions", {"prompt": "A list:", "max_tokens": 8, "temperature": 0, "grammar_root": "array", "return_raw_tokens": True})
    for chunk in chunks:
        _check_envelope(chunk, "text_completion")
    streamed = [t for c in chunks for choice in c["choices"] for t in choice.get("tokens") or []]
    assert all(choice["text"] == "" for c in chunks for choice in c["choices"])
    assert len(chunks) > 1 and streamed == whole.choices[0].tokens


def test_streamed_tool_calls_arrive_in_fragments_that_every_sdk_assembles(http: Any, oai: Any, cb: Any) -> None:
    body = {"messages": ASK, "tools": [WEATHER, TIME], "tool_choice": "required", "max_tokens": 32, "temperature": 0}
    chunks = _frames(http, "/v1/chat/completions", body)
    fragments: dict[int, list[dict[str, Any]]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls") or []:
                fragments.setdefault(call["index"], []).append(call)
    assert fragments
    streamed = {}
    for index, calls in fragments.items():
        assert calls[0]["id"].startswith("call_") and calls[0]["function"]["name"] and calls[0]["type"] == "function"
        # later fragments carry the index, the type and an arguments piece, nothing else
        assert all(set(c) == {"index", "type", "function"} and set(c["function"]) == {"arguments"} for c in calls[1:])
        assert all(c["type"] == "function" for c in calls[1:])
        name = calls[0]["function"]["name"]
        arguments = "".join(c["function"]["arguments"] for c in calls)
        jsonschema.validate(json.loads(arguments), {"get_weather": WEATHER, "get_time": TIME}[name]["function"]["parameters"])
        streamed[index] = (name, arguments)
    assert max(len(calls) for calls in fragments.values()) > 2  # arguments grow while they are written
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    # OpenAI's stream helper assembles the same calls.
    with oai.chat.completions.stream(model=MODEL, **body) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    assert {i: (c.function.name, c.function.arguments) for i, c in enumerate(final.choices[0].message.tool_calls or [])} == streamed
    # So does concatenating the Cerebras SDK's typed chunks.
    pieces: dict[int, tuple[str, str]] = {}
    for chunk in cb.chat.completions.create(model=MODEL, stream=True, **body):
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                name, arguments = pieces.get(call.index, ("", ""))
                pieces[call.index] = (name + (call.function.name or ""), arguments + (call.function.arguments or ""))
    assert pieces == streamed


def test_a_stream_whose_client_leaves_is_cancelled(server: _Running, http: Any) -> None:
    body = {"prompt": "Count: 1, 2,", "max_tokens": 32, "min_tokens": 32, "temperature": 0, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as response:
        next(response.iter_lines())
    deadline = time.monotonic() + 3.0
    while httpx.get(server.url + "/health").json()["running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(server.url + "/health").json()["running"] == 0


def test_too_long_prompt_is_context_length_exceeded(oai: Any, cb: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.completions.create(model=MODEL, prompt="word " * 9000, max_tokens=2)
    assert caught.value.body["code"] == "context_length_exceeded"
    with pytest.raises(cerebras_sdk.BadRequestError):
        cb.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 9000}], max_completion_tokens=2)


# -- garbage ---------------------------------------------------------------------------------------

_NAMES = ["model", "prompt", "messages", "n", "max_tokens", "temperature", "stream", "stop", "tools", "tool_choice",
          "response_format", "grammar_root", "grammar", "logprobs", "echo", "logit_bias", "seed", "stream_options", "role", "content"]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=8) | st.sampled_from(_NAMES),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_NAMES) | st.text(max_size=6), inner, max_size=5),
    max_leaves=12,
)
_BODIES = st.one_of(
    st.binary(max_size=64),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(_NAMES), _JSON, max_size=6).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(["/v1/completions", "/v1/chat/completions", "/v1/models/x", "/v1/completions/x"]), body=_BODIES)
def test_garbage_bodies_never_get_a_server_error(http: Any, path: str, body: bytes) -> None:
    response = http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_normal_request_succeeds_after_the_garbage(oai: Any) -> None:
    out = oai.completions.create(model=MODEL, prompt="After the storm:", max_tokens=4, extra_body={"grammar_root": "value"})
    json.loads(out.choices[0].text)
