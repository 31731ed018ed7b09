"""An OpenAI / Cerebras-compatible HTTP server over one local model (FastAPI + uvicorn).

``create_app(model)`` builds the app; ``onrails serve`` runs it. Requests go through the same
planning and response building as ``onrails.Client`` (every parameter, every check), then into
one ``Scheduler``: a decoding thread that batches the sequences of concurrent requests
continuously (they join and leave the running batch between steps). Planning runs in threads
off the event loop; grammar compiles run in worker processes (``ServerLimits``), killed at their
budget; the model's grammar compiler and its cache are shared, so the same schema compiles once.

Errors use OpenAI's body ``{"error": {"message", "type", "param", "code"}}``: 400 for invalid
parameters (code ``context_length_exceeded`` for a prompt that does not fit), 401 for a wrong or
missing key, 404 for an unknown model or route, 413 for an oversized body, 429 (with
``Retry-After``) when the request queue or the compile queue is full. Streams are server-sent events: ``data: <json>`` frames and one final ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from onrails.errors import BadRequestError, ContextLengthError, OnRailsError, QueueFullError
from onrails.runtime._batching import Job, Scheduler
from onrails.runtime.generation import SequenceResult
from onrails.runtime.planning import Plan, plan_chat, plan_completion
from onrails.runtime.responses import chat_completion, completion, stream_chat, stream_completion

if TYPE_CHECKING:
    from onrails.runtime.models import Model

__all__ = ["ChatCompletionRequest", "CompletionRequest", "ServerLimits", "create_app", "serve"]

_log = logging.getLogger("onrails.server")


@dataclass(frozen=True)
class ServerLimits:
    """What one server accepts; every limit is enforced per request or over the whole server.

    ``max_sequences``: rows decoded together (a request's ``n`` × prompts must fit: else 400);
    ``max_queue``: requests waiting for room (beyond: 429); ``max_tokens``: the largest
    ``max_tokens`` a request may ask (beyond: 400) and the default when it asks none;
    ``max_body_bytes``: request body size (beyond: 413); ``request_timeout_s``: a request's
    sequences end with finish_reason "length" this long after it arrived;
    ``compile_budget_s``: the time one grammar or schema may take to compile (beyond: 400), and
    the longest a compile waits for a process (beyond: 429); ``compile_processes``: compiles
    running at once, each in a process of its own, so that they slow neither decoding nor
    requests that need no compile; ``max_waiting_compiles``: compiles waiting for a process
    (beyond: 429);
    ``grammar_cache_bytes``: what the grammar compiler's caches may hold (compiled grammars and
    their masks, and the parts they share); ``prefix_cache_bytes``: prompt KV kept for reuse.
    """

    max_sequences: int = 16
    max_queue: int = 64
    max_tokens: int = 1024
    max_body_bytes: int = 1 << 20
    request_timeout_s: float = 300.0
    compile_budget_s: float = 10.0
    compile_processes: int = 2
    max_waiting_compiles: int = 64
    grammar_cache_bytes: int = 1 << 30
    prefix_cache_bytes: int = 128 << 20

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise BadRequestError(f"must be a positive number, got {value!r}", param=f.name)


# -- request models: they document the API in /openapi.json; the planner checks every value ------


class _Params(BaseModel):
    # strict: no silent coercion ("1" is not 1); unknown parameters reach the planner, which
    # refuses them by name.
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(None, description="the served model's id (default: the served model)")
    stream: bool | None = None
    stream_options: dict[str, Any] | None = Field(None, description='{"include_usage": bool}')
    n: int | None = None
    max_tokens: int | None = None
    min_tokens: int | None = None
    temperature: float | None = Field(None, description="0 (greedy) to 2")
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = Field(None, description="0 (off) to 1: drop tokens below min_p times the top one's probability")
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    return_raw_tokens: bool | None = Field(None, description="token ids in choices[].tokens, text empty")
    grammar_root: str | None = Field(None, description="a built-in rule: value, object, array, func, ...")
    grammar: str | None = Field(None, description="Lark grammar text")
    grammar_start: str | None = None
    response_format: dict[str, Any] | None = None
    whitespace: str | None = Field(None, description="flexible, bounded (default) or compact")
    logprobs_mode: str | None = None
    ensure_parsable: bool | None = None
    jump_forward: bool | None = None


class CompletionRequest(_Params):
    """``POST /v1/completions``: OpenAI's parameters plus onrails' constraint and sampling extras."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = None
    best_of: int | None = None
    logprobs: int | None = Field(None, description="top alternatives per token (0-20)")
    suffix: str | None = None


class ChatCompletionRequest(_Params):
    """``POST /v1/chat/completions``: OpenAI's parameters plus onrails' extras."""

    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


# -- errors ---------------------------------------------------------------------------------------


def _error(status: int, message: str, kind: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


_STATUS_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def _bad_request(exc: BadRequestError) -> JSONResponse:
    code = "context_length_exceeded" if isinstance(exc, ContextLengthError) else None
    return _error(400, str(exc), "invalid_request_error", exc.param, code)


def _validation_param(loc: tuple[Any, ...]) -> str | None:
    parts = [p for p in loc if p != "body"]
    # pydantic names the union member it tried (e.g. "str", "list[int]"): not a parameter.
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and ("[" in p or p in ("str", "int", "float", "bool", "dict")):
            break
        else:
            out += ("." if out else "") + str(p)
    return out or None


class _Guard:
    """ASGI middleware: the API key (on /v1/) and the body size, before any parsing."""

    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        if self.api_key is not None and path.startswith("/v1/") and path != "/v1/tcp_warming":
            given = headers.get("authorization", "")
            token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            if not secrets.compare_digest(token.encode(), self.api_key.encode()):
                message = "missing API key" if not given else "invalid API key"
                await _error(401, message, "authentication_error", None, "invalid_api_key")(scope, receive, send)
                return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._too_large(scope, receive, send)
            return
        # Read the whole body first (a chunked one has no length to check), then replay it.
        body = b""
        more = scope.get("method") in ("POST", "PUT", "PATCH")
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await self._too_large(scope, receive, send)
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        message = f"request body larger than {self.max_body} bytes"
        await _error(413, message, "invalid_request_error", None, "request_too_large")(scope, receive, send)


# -- the app --------------------------------------------------------------------------------------


def _dump(obj: BaseModel) -> dict[str, Any]:
    data = obj.model_dump(mode="json")
    for choice in data.get("choices") or []:
        message = choice.get("message")
        if isinstance(message, dict):
            message.pop("parsed", None)  # a Python object for in-process callers only
    return data


def _frame(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


_PLANNERS: dict[str, Callable[..., tuple[Plan, bool]]] = {"completion": plan_completion, "chat": plan_chat}
_BUILDERS: dict[str, Callable[[Plan, list[SequenceResult]], BaseModel]] = {"completion": completion, "chat": chat_completion}
_STREAMERS: dict[str, Callable[..., Iterator[BaseModel]]] = {"completion": stream_completion, "chat": stream_chat}


class _Server:
    def __init__(self, model: "Model", limits: ServerLimits) -> None:
        self.model = model
        self.limits = limits
        self.created = int(time.time())
        self.scheduler = Scheduler(model, max_sequences=limits.max_sequences, max_queue=limits.max_queue)
        # Planning threads mostly wait: for a compile process, or on a compile of the same
        # grammar by another request. Enough of them that a request needing no compile never
        # waits for a thread.
        self.planner = ThreadPoolExecutor(
            max_workers=limits.max_sequences + limits.max_queue, thread_name_prefix="onrails-plan"
        )
        # Stream builders block between decoding steps: one thread per stream in flight.
        self.streams = ThreadPoolExecutor(
            max_workers=limits.max_sequences + limits.max_queue, thread_name_prefix="onrails-stream"
        )

    def close(self) -> None:
        self.scheduler.close()
        self.planner.shutdown(wait=False, cancel_futures=True)
        self.streams.shutdown(wait=False, cancel_futures=True)

    def model_card(self) -> dict[str, Any]:
        return {"id": self.model.name, "object": "model", "created": self.created, "owned_by": "onrails"}

    def _kwargs(self, body: _Params) -> dict[str, Any]:
        kwargs = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
        model = kwargs.pop("model", None)
        if model is not None and model != self.model.name:
            raise _UnknownModel(model)
        for name in ("max_tokens", "max_completion_tokens"):
            value = kwargs.get(name)
            if isinstance(value, int) and value > self.limits.max_tokens:
                raise BadRequestError(f"at most {self.limits.max_tokens} on this server, got {value}", param=name)
        return kwargs

    def _plan(self, kind: str, kwargs: dict[str, Any]) -> tuple[Plan, bool]:
        plan, stream = _PLANNERS[kind](self.model, kwargs)
        if len(plan.requests) > self.limits.max_sequences:
            raise BadRequestError(
                f"{len(plan.requests)} sequences (prompts × n or best_of) exceed this server's limit of "
                f"{self.limits.max_sequences}",
                param="n",
            )
        for r in plan.requests:
            if r.params.max_tokens is None:
                r.params = dataclasses.replace(r.params, max_tokens=self.limits.max_tokens)
        return plan, stream

    async def handle(self, kind: str, body: _Params, request: Request) -> Response:
        try:
            kwargs = self._kwargs(body)
            loop = asyncio.get_running_loop()
            plan, stream = await loop.run_in_executor(self.planner, self._plan, kind, kwargs)
            deadline = time.perf_counter() + self.limits.request_timeout_s
            job = self.scheduler.submit(plan.requests, plan.timing, deadline=deadline, stream=stream)
        except _UnknownModel as exc:
            return _error(404, f"model {exc.args[0]!r} is not served here; this server serves {self.model.name!r}", "invalid_request_error", "model", "model_not_found")
        except BadRequestError as exc:
            return _bad_request(exc)
        except QueueFullError as exc:
            response = _error(429, str(exc), "rate_limit_error", None, "queue_exceeded")
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
            return response
        except OnRailsError as exc:  # e.g. a grammar feature this version refuses
            return _error(400, str(exc), "invalid_request_error")
        if stream:
            return StreamingResponse(self._events(kind, plan, job), media_type="text/event-stream")
        try:
            results = await self._wait(job, request)
        except OnRailsError as exc:  # the decoding step failed; the scheduler goes on
            return _error(500, str(exc), "server_error")
        if results is None:
            return Response(status_code=499)  # the client is gone: nobody reads this
        return JSONResponse(_dump(_BUILDERS[kind](plan, results)))

    async def _wait(self, job: Job, request: Request) -> list[SequenceResult] | None:
        waiter = asyncio.ensure_future(job.result())
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=0.5)
                if done:
                    return waiter.result()
                if await request.is_disconnected():
                    return None
        finally:
            if not waiter.done():
                waiter.cancel()
                job.cancel()

    async def _events(self, kind: str, plan: Plan, job: Job) -> AsyncIterator[bytes]:
        chunks = _STREAMERS[kind](plan, job.snapshots())
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await loop.run_in_executor(self.streams, next, chunks, None)
                if chunk is None:
                    break
                yield _frame(_dump(chunk))
        except Exception as exc:  # headers are sent: the error goes in the stream
            if isinstance(exc, OnRailsError):
                _log.warning("stream %s failed: %s", plan.id, exc)
                message = str(exc)
            else:
                _log.exception("stream %s failed", plan.id)
                message = "internal server error"
            yield _frame({"error": {"message": message, "type": "server_error", "param": None, "code": None}, "status_code": 500})
        finally:
            job.cancel()  # a no-op once finished; stops the sequences of a client that left
        yield b"data: [DONE]\n\n"


class _UnknownModel(Exception):
    pass


def create_app(
    model: "Model | str | None" = None, *, api_key: str | None = None, limits: ServerLimits | None = None
) -> FastAPI:
    """The FastAPI app serving ``model`` (a loaded ``Model``, a name or path; default: the
    default model). Loads the model now (seconds) and starts the decoding thread, which stops
    when the app shuts down. ``api_key``: required as ``Authorization: Bearer`` on ``/v1/``.
    Until the app shuts down, the model's grammar compiler has ``limits``' budget, compile
    processes and cache size, and the model ``limits.prefix_cache_bytes``.
    """
    from onrails.runtime.api import resolve_model

    limits = limits or ServerLimits()
    loaded = resolve_model(model)
    # The model (and its compiler) may be shared with in-process callers: set back at shutdown.
    compiler = loaded.compiler
    before = (compiler.budget_s, compiler.processes, compiler.cache_bytes, loaded.prefix_cache_bytes)
    compiler.budget_s = limits.compile_budget_s
    compiler.use_processes(limits.compile_processes, max_waiting=limits.max_waiting_compiles)
    compiler.set_cache_bytes(limits.grammar_cache_bytes)
    loaded.prefix_cache_bytes = limits.prefix_cache_bytes
    server = _Server(loaded, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        server.close()
        budget_s, (processes, max_waiting), cache_bytes, prefix_bytes = before
        compiler.budget_s = budget_s
        compiler.use_processes(processes, max_waiting=max_waiting)
        compiler.set_cache_bytes(cache_bytes)
        loaded.prefix_cache_bytes = prefix_bytes

    app = FastAPI(title="onrails", version="0.1.0", lifespan=lifespan)
    app.state.server = server

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = tuple(first.get("loc", ()))
        message = str(first.get("msg", "invalid request"))
        if first.get("type") == "json_invalid":
            return _error(400, f"the body is not valid JSON: {message}", "invalid_request_error")
        param = _validation_param(loc)
        return _error(400, f"{param}: {message}" if param else message, "invalid_request_error", param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return _error(exc.status_code, message, _STATUS_TYPES.get(exc.status_code, "invalid_request_error"))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal server error", "server_error")

    @app.post("/v1/completions", summary="Create a completion")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        return await server.handle("completion", body, request)

    @app.post("/v1/chat/completions", summary="Create a chat completion")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return await server.handle("chat", body, request)

    @app.get("/v1/models", summary="List the served model")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [server.model_card()]}

    @app.get("/v1/models/{model_id:path}", summary="Describe a model", response_model=None)
    async def model_info(model_id: str) -> dict[str, Any] | JSONResponse:
        if model_id != loaded.name:
            return _error(404, f"model {model_id!r} is not served here", "invalid_request_error", "model", "model_not_found")
        return server.model_card()

    @app.get("/health", summary="Liveness and queue depth")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": loaded.name, "queued": server.scheduler.queued, "running": server.scheduler.running}

    @app.get("/v1/tcp_warming", summary="Answered at once (the Cerebras client calls it when built)")
    async def tcp_warming() -> PlainTextResponse:
        return PlainTextResponse("ok")

    app.add_middleware(_Guard, api_key=api_key, max_body_bytes=limits.max_body_bytes)
    return app


def serve(
    model: "Model | str | None" = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    log_level: str = "info",
) -> None:
    """Run the server until interrupted (``create_app`` + uvicorn)."""
    import uvicorn

    app = create_app(model, api_key=api_key, limits=limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
