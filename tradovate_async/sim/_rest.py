"""The REST side: ``/v1/<entity>/<operation>`` with bearer tokens, faults and penalty tickets.

Method is not enforced (the real API is "relaxed REST") and paths are matched
case-insensitively. The order of checks mirrors what a client can observe: a pending penalty
ticket first (it is keyed to the caller, not to the credentials), then scripted faults, then
the path, then the bearer token, then the operation itself.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ._state import Reply, SimState, normalize_path
from ._types import Fault, RequestRecord, echo_text
from ._ws import SocketHub

__all__ = ["RestFrontEnd"]

logger = logging.getLogger(__name__)

LOGIN = "auth/accesstokenrequest"
RENEW = "auth/renewaccesstoken"
JSON_TYPE = "application/json"


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


class _DroppingResponse(Response):
    """Sends the headers and half of the body, then aborts the TCP connection."""

    def __init__(
        self,
        body: bytes,
        media_type: str,
        abort: Callable[[tuple[str, int] | None], bool],
    ) -> None:
        super().__init__(content=body, media_type=media_type)
        self._abort = abort

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        client = scope.get("client")
        if not self._abort((client[0], client[1]) if client else None):
            raise ConnectionAbortedError("simulated drop")  # uvicorn then closes the socket
        for _ in range(3):  # let connection_lost() run so uvicorn sees the disconnect
            await asyncio.sleep(0)


class RestFrontEnd:
    """The Starlette endpoint that serves every ``/v1/...`` HTTP request."""

    def __init__(
        self,
        state: SimState,
        hub: SocketHub,
        abort_client: Callable[[tuple[str, int] | None], bool],
    ) -> None:
        self.state = state
        self.hub = hub
        self._abort_client = abort_client

    async def endpoint(self, request: Request) -> Response:
        path = normalize_path(request.url.path)
        raw = await request.body()
        token = _bearer(request.headers.get("authorization"))
        parsed: Any = None
        body_ok = True
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError:
                body_ok = False
        ticket = parsed.get("p-ticket") if isinstance(parsed, dict) else None
        if ticket is None:
            ticket = request.query_params.get("p-ticket")
        if isinstance(parsed, dict):
            parsed.pop("p-ticket", None)
        device = parsed.get("deviceId") if isinstance(parsed, dict) and path == LOGIN else None

        fault: Fault | None = None
        penalty = self.state.check_ticket(path, ticket)
        if penalty is not None:
            reply = Reply.json(penalty)
        else:
            fault = self.state.take_fault(path, "rest")
            if fault is not None and fault.kind == "echo":
                received = raw.decode("utf-8", "replace")
                if token:
                    received += f" Authorization: Bearer {token}"
                reply = _echo_reply(fault, received)
            elif fault is not None and fault.kind not in ("delay", "drop", "truncated_json"):
                reply = self._fault_reply(path, fault)
            else:
                if fault is not None and fault.kind == "delay":
                    await self.hub.pause(fault.seconds)
                reply = self._process(path, raw, parsed, body_ok, token, request)
                await self.hub.apply(reply)

        self.state.record(
            RequestRecord(
                time=self.state.now(),
                method=request.method,
                path=path,
                status=reply.status,
                token_prefix=token[:8] if token else None,
                has_p_ticket=ticket is not None,
                transport="rest",
                fault=fault.kind if fault else None,
                reason=reply.reason,
                device_id=device if isinstance(device, str) else None,
                host=request.headers.get("host"),
                query=request.url.query,
            )
        )
        return self._render(reply, fault)

    def _process(
        self,
        path: str,
        raw: bytes,
        parsed: Any,
        body_ok: bool,
        token: str | None,
        request: Request,
    ) -> Reply:
        if path == LOGIN:
            if isinstance(parsed, dict):
                raw = json.dumps(parsed).encode()  # without the p-ticket
            return self.state.access_token_request(raw)
        if path != RENEW and not self.state.knows(path):
            return Reply.plain(404, f"Not found: {path}", "not-found")
        session, reason = self.state.check_token(token)
        if session is None:
            text = "Expired Access Token" if reason == "expired" else "Access is denied"
            return Reply.plain(401, text, reason)
        if path == RENEW:
            return self.state.renew(session)
        if not body_ok:
            return Reply.plain(400, "Request body is not valid JSON", "bad-request")
        return self.state.api(path, dict(request.query_params), parsed, session)

    def _fault_reply(self, path: str, fault: Fault) -> Reply:
        if fault.kind == "penalty":
            return Reply.json(self.state.issue_penalty(path, fault.p_time, fault.captcha))
        if fault.kind == "error_text":
            return Reply.json({"errorText": fault.text})
        return Reply(fault.status_code, text="", reason=f"fault:{fault.kind}")

    def _render(self, reply: Reply, fault: Fault | None) -> Response:
        media = JSON_TYPE if reply.is_json else "text/plain"
        if reply.is_json:
            body = json.dumps(reply.payload, separators=(",", ":")).encode()
        else:
            body = (reply.text or "").encode()
        if fault is not None:
            match fault.kind:
                case "echo":
                    media = fault.content_type
                case "status":
                    media = fault.content_type
                    body = fault.body if fault.body is not None else b""
                    if fault.body is None and fault.status_code == 500:
                        body = f"Internal Server Error, error id: {uuid.uuid4()}".encode()
                case "html":
                    media = "text/html"
                    body = _html_page(fault.status_code).encode()
                case "malformed_json":
                    media = JSON_TYPE
                    body = b'{"accessToken": oops, "errorText": ]'
                case "truncated_json":
                    body = body[: len(body) // 2]
                case "drop":
                    return _DroppingResponse(body, media, self._abort_client)
        response = Response(content=body, status_code=reply.status, media_type=media)
        if fault is not None and fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response


def _echo_reply(fault: Fault, received: str) -> Reply:
    text = echo_text(received)
    if fault.content_type == "application/json":
        return Reply.json({"errorText": text})
    if fault.content_type == "text/html":
        page = f"<html><body><h1>{fault.status_code}</h1><pre>{text}</pre></body></html>"
        return Reply(fault.status_code, text=page, reason="fault:echo")
    return Reply(fault.status_code, text=text, reason="fault:echo")


def _html_page(code: int) -> str:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = "Error"
    return (
        f"<html>\r\n<head><title>{code} {phrase}</title></head>\r\n<body>\r\n"
        f"<center><h1>{code} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
