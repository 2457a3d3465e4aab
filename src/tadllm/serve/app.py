"""The FastAPI app of `tad serve`: the OpenAI routes, server-sent events, error bodies, and a uvicorn server
that runs in a background thread (for tests, benchmarks and notebooks).

Routes: POST /v1/completions, POST /v1/chat/completions (both with `stream: true`), GET /v1/models,
GET /health. Errors have OpenAI's body, `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from . import schemas as S
from .scheduler import Delta, Failed, QueueFull, ShuttingDown
from .service import ServeError, Service

logger = logging.getLogger(__name__)
POLL_S = 0.25  # how often a waiting request checks whether its client is still there


def create_app(service: Service, shutdown_timeout: float = 30.0) -> FastAPI:
    """The app; its lifespan starts the decoding worker and, at shutdown, drains it for `shutdown_timeout`
    seconds before failing what is left."""

    @asynccontextmanager
    async def lifespan(app):
        service.scheduler.start()
        yield
        await run_in_threadpool(service.scheduler.shutdown, shutdown_timeout)

    app = FastAPI(title="tadllm", lifespan=lifespan)
    app.state.service = service
    app.add_exception_handler(ServeError, serve_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)

    @app.get("/health")
    async def health():
        sched = service.scheduler
        body = {"status": "shutting down" if sched.stopping else "ok", "model": service.model_name,
                "live_rows": sched.live_rows, "waiting": sched.num_waiting, "max_batch": sched.max_batch,
                "max_queue": sched.max_queue}
        return JSONResponse(body, status_code=503 if sched.stopping else 200)

    @app.get("/v1/models")
    async def models():
        return S.ModelList(data=[S.ModelCard(id=service.model_name, created=service.created)]).model_dump()

    @app.post("/v1/completions")
    @contained
    async def completions(req: S.CompletionRequest, request: Request):
        service.check_model(req.model)
        ids = await run_in_threadpool(service.completion_ids, req)
        return await answer(request, service, req, ids, req.max_tokens, CompletionFormat(service.model_name))

    @app.post("/v1/chat/completions")
    @contained
    async def chat_completions(req: S.ChatRequest, request: Request):
        service.check_model(req.model)
        ids = await run_in_threadpool(service.chat_ids, req)
        limit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        return await answer(request, service, req, ids, limit, ChatFormat(service.model_name))

    return app


# ------------------------------------------------------------------------------------------ answering


async def answer(request: Request, service: Service, req, ids: list[int], max_tokens, fmt: "ResponseFormat"):
    """Submit the job; a whole response, or an event stream when `req.stream`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    job = service.job(req, ids, lambda event: loop.call_soon_threadsafe(queue.put_nowait, event), max_tokens)
    try:
        service.scheduler.submit(job)
    except QueueFull as err:
        raise ServeError(503, str(err), kind="server_overloaded", code="queue_full") from None
    except ShuttingDown as err:
        raise ServeError(503, str(err), kind="server_unavailable") from None
    events = Events(request, queue)
    if req.stream:
        usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(stream(service, job, events, fmt, usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    final = None
    try:
        final = await events.next()  # a request that does not stream gets no Delta: its answer
    except ClientGone:
        return Response(status_code=499)  # nobody reads it
    finally:
        events.close()
        if final is None:  # the client went away (or this handler was cancelled): free the row
            service.scheduler.cancel(job)
    if isinstance(final, Failed):
        raise ServeError(final.status, final.message, kind="server_error")
    return fmt.full(final)


async def stream(service: Service, job, events: "Events", fmt: "ResponseFormat", include_usage: bool):
    """Server-sent events: text that became final, then the finish reason, usage if asked, `[DONE]`."""
    ended = False
    try:
        for chunk in fmt.opening():
            yield sse(chunk)
        sent = ""
        while not ended:
            event = await events.next()
            if isinstance(event, Delta):
                sent += event.text
                yield sse(fmt.piece(event.text))
                continue
            ended = True
            if isinstance(event, Failed):
                yield sse({"error": S.ErrorDetail(message=event.message, type="server_error").model_dump()})
                break
            if len(event.text) > len(sent):
                yield sse(fmt.piece(event.text[len(sent):]))
            yield sse(fmt.last(event.finish_reason))
            if include_usage:
                yield sse(fmt.usage(event))
        yield "data: [DONE]\n\n"
    except ClientGone:
        pass
    finally:
        events.close()
        if not ended:  # the client went away (or the server is stopping): free the row
            service.scheduler.cancel(job)


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


class ClientGone(Exception):
    pass


class Events:
    """The worker's events for one request, waited for while watching whether the client is still there."""

    def __init__(self, request: Request, queue: asyncio.Queue):
        self.request, self.queue, self.task = request, queue, None

    async def next(self):
        while True:
            if self.task is None:
                self.task = asyncio.ensure_future(self.queue.get())
            done, _ = await asyncio.wait({self.task}, timeout=POLL_S)
            if done:
                event, self.task = self.task.result(), None
                return event
            if await self.request.is_disconnected():
                raise ClientGone()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None


class ResponseFormat:
    """The bodies of one response (`answer` asks for them: `full`, or `opening`, `piece`s, `last`, `usage` when
    streamed); every body carries the response's id, creation time and model. A subclass says how a list of
    choices becomes a body (`_body`) and what the choices hold."""

    id_prefix = ""

    def __init__(self, model: str):
        self.id, self.created, self.model = f"{self.id_prefix}-{uuid.uuid4().hex}", int(time.time()), model

    def _body(self, choices, usage=None) -> dict:
        raise NotImplementedError

    def usage(self, done) -> dict:
        return self._body([], S.Usage(**done.usage()))


class CompletionFormat(ResponseFormat):
    """The /v1/completions bodies (a streamed chunk has the same shape as the whole response)."""

    id_prefix = "cmpl"

    def _body(self, choices, usage=None) -> dict:
        return S.Completion(id=self.id, created=self.created, model=self.model, choices=choices,
                            usage=usage).model_dump()

    def full(self, done) -> dict:
        choice = S.CompletionChoice(text=done.text, finish_reason=done.finish_reason)
        return self._body([choice], S.Usage(**done.usage()))

    def opening(self) -> list[dict]:
        return []

    def piece(self, text: str) -> dict:
        return self._body([S.CompletionChoice(text=text)])

    def last(self, reason: str) -> dict:
        return self._body([S.CompletionChoice(text="", finish_reason=reason)])


class ChatFormat(ResponseFormat):
    """The /v1/chat/completions bodies: a whole `chat.completion`, or `chat.completion.chunk`s with deltas."""

    id_prefix = "chatcmpl"

    def _body(self, choices, usage=None) -> dict:  # a streamed chunk
        return S.ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices,
                                     usage=usage).model_dump()

    def full(self, done) -> dict:
        choice = S.ChatChoice(message=S.AssistantMessage(content=done.text), finish_reason=done.finish_reason)
        return S.ChatCompletion(id=self.id, created=self.created, model=self.model, choices=[choice],
                                usage=S.Usage(**done.usage())).model_dump()

    def opening(self) -> list[dict]:
        return [self._body([S.ChatChunkChoice(delta=S.ChatDelta(role="assistant", content=""))])]

    def piece(self, text: str) -> dict:
        return self._body([S.ChatChunkChoice(delta=S.ChatDelta(content=text))])

    def last(self, reason: str) -> dict:
        return self._body([S.ChatChunkChoice(delta=S.ChatDelta(), finish_reason=reason)])


# ------------------------------------------------------------------------------------------ errors


def contained(route):
    """Answer an unexpected error of a route as a 500 `ServeError`: an exception that reaches Starlette's
    outermost middleware is re-raised to uvicorn, which then drops the client's keep-alive connection."""

    @functools.wraps(route)
    async def wrapper(*args, **kwargs):
        try:
            return await route(*args, **kwargs)
        except ServeError:
            raise
        except Exception as err:  # noqa: BLE001 - this request fails, the server goes on
            logger.exception("request failed")
            raise ServeError(500, f"internal error: {type(err).__name__}: {err}", kind="server_error") from err

    return wrapper


def error_response(status: int, message: str, kind: str, param=None, code=None) -> JSONResponse:
    body = S.ErrorResponse(error=S.ErrorDetail(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status)


async def serve_error(request: Request, err: ServeError) -> JSONResponse:
    return error_response(err.status, err.message, err.kind, err.param, err.code)


async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
    """OpenAI answers invalid parameters with a 400 (FastAPI's default would be a 422)."""
    problems = []
    for e in err.errors():
        where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "body"
        problems.append(f"{where}: {e.get('msg')}")
    first = err.errors()[0].get("loc", ()) if err.errors() else ()
    param = str(first[1]) if len(first) > 1 else None
    return error_response(400, "invalid request: " + "; ".join(problems), "invalid_request_error", param)


async def internal_error(request: Request, err: Exception) -> JSONResponse:
    logger.exception("request failed", exc_info=err)
    return error_response(500, f"internal error: {type(err).__name__}: {err}", "server_error")


# ------------------------------------------------------------------------------------------ background server


class BackgroundServer:
    """uvicorn serving `app` on host:port from a daemon thread; `with BackgroundServer(app, port=p): ...`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning",
                 shutdown_timeout: float = 5.0):
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                timeout_graceful_shutdown=shutdown_timeout)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="tad-serve-http", daemon=True)
        self.url = f"http://{host}:{port}"

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 60.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
