"""Request body size limit, enforced before a handler reads the body.

Content-Length is checked up front; a chunked body is counted as it streams in. Uploads get
their own, larger limits (datasets: max_upload_bytes; base models: max_base_model_upload_bytes),
predict and infer max_request_bytes (rows), every other route max_json_body_bytes.
"""

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem

log = logging.getLogger(__name__)

# Room for the multipart framing and the small form fields beside the file; the service
# checks the file itself against its own limit to the byte.
UPLOAD_FORM_OVERHEAD = 64 * 1024
# The routes whose bodies are rows to predict on (app/serving/front_door.py's four paths).
ROWS_PATHS = ("/predict", "/infer")


class BodySizeLimit:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        uploads: dict[tuple[str, str], int] | None = None,
        rows_bytes: int | None = None,
    ) -> None:
        """max_bytes: any body; uploads: (method, path) → that upload's file limit;
        rows_bytes: predict's and infer's bodies (default max_bytes)."""
        self.app = app
        self.max_bytes = max_bytes
        self.rows_bytes = rows_bytes or max_bytes
        self.uploads = {route: n + UPLOAD_FORM_OVERHEAD for route, n in (uploads or {}).items()}

    def limit_for(self, scope: Scope) -> int:
        method, path = scope.get("method", ""), scope.get("path", "")
        if path.endswith(ROWS_PATHS):
            return self.rows_bytes
        return self.uploads.get((method, path), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._reject(send, limit, scope)
            return
        seen = 0
        exceeded = False
        started = False
        replaced = False

        # Past the limit the app is told the client left, so it stops reading; an exception
        # raised here would reach it wrapped (anyio task groups in BaseHTTPMiddleware) and
        # become FastAPI's "400 error parsing the body".
        async def counted_receive() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                exceeded = True
                return {"type": "http.disconnect"}
            return message

        # Whatever the app answers about a body it never got whole is replaced by the 413.
        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start":
                started = True
                replaced = exceeded
                if replaced:
                    await self._reject(send, limit, scope)
            if not replaced:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception as exc:
            if not exceeded:
                raise
            # The app failed on the body cut short above: that failure is this 413.
            log.debug("body over %d bytes on %s: %r", limit, scope.get("path"), exc)
        if exceeded and not started:
            await self._reject(send, limit, scope)

    async def _reject(self, send: Send, limit: int, scope: Scope) -> None:
        message = f"request body is larger than {limit} bytes"
        error: object = {
            "code": "payload_too_large",
            "message": message,
            "details": [problem("body", message, "payload_too_large", max_bytes=limit)],
        }
        if scope["path"].startswith("/v2/"):  # the Open Inference Protocol's shape, as on /v2
            error = message
        body = json.dumps({"error": error}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
