"""The one place where errors become HTTP responses: `application/problem+json` with a stable `type`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bottega.core.errors import PROBLEM_PREFIX, BottegaError, PayloadTooLarge
from bottega.core.names import field_errors

log = logging.getLogger("bottega.api")
PROBLEM_JSON = "application/problem+json"
HTTP_SLUGS = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
}


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_PREFIX + slug, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


async def _domain(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BottegaError)
    if exc.status >= 500:
        log.error("server error: %s", exc.detail)
    body = exc.to_problem()
    return JSONResponse(body, status_code=exc.status, media_type=PROBLEM_JSON)


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors, detail = field_errors(exc.errors())
    return problem(422, "invalid-input", "Invalid input", detail or "invalid request", errors=errors)


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = HTTP_SLUGS.get(exc.status_code, "http-error")
    response = problem(exc.status_code, slug, slug.replace("-", " ").capitalize(), str(exc.detail))
    for key, value in (exc.headers or {}).items():
        response.headers[key] = value
    return response


async def _database(request: Request, exc: Exception) -> JSONResponse:
    """SQLite refuses a second writer that waited too long: a retryable 503, not a server bug."""
    if "database is locked" in str(exc):
        response = problem(
            503,
            "unavailable",
            "Service unavailable",
            "the embedded database is busy with another write; retry the request",
        )
        response.headers["Retry-After"] = "1"
        return response
    return await _unexpected(request, exc)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem(500, "internal", "Internal error", "the server failed; the error is in its log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(BottegaError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(OperationalError, _database)
    app.add_exception_handler(Exception, _unexpected)


class BodyLimit:
    """Refuse request bodies over a limit with 413 before they reach a handler.

    JSON bodies get `max_json_bytes`; streamed uploads (`application/octet-stream`) get `max_upload_bytes`. The
    declared Content-Length is checked first; chunked bodies are counted as they arrive.
    """

    def __init__(self, app: ASGIApp, max_json_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_json = max_json_bytes
        self.max_upload = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        is_upload = headers.get("content-type", "").startswith("application/octet-stream")
        limit = self.max_upload if is_upload else self.max_json
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        if declared is None and not is_upload:
            await self._buffered(scope, receive, send, limit)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)

    async def _buffered(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """A JSON body without Content-Length: read it (it is small by definition) and refuse it past the limit,
        so the client gets a 413 rather than a parse error."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await self._refuse(send, limit)
                return
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], receive), send)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        response = problem(
            413, "payload-too-large", "Payload too large", f"the request body is over the limit of {limit} bytes"
        )
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A `receive` that returns `messages` first, then defers to `then` (e.g. to learn of a disconnect)."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
