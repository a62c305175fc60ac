"""A short way through the app for predict and infer requests.

A request normally walks the route list (a regex per route, in order), then FastAPI's
exception, exit-stack and dependency layers, before its endpoint runs; for a one-row
predict on a small model that was over half of the request's CPU (bench/README.md). This
middleware sits inside the service's own (body limit, metrics) and sends a POST to a predict
or V2 infer path straight to its endpoint (app/api/routers/predict.py, v2.py), which takes
the request alone and needs none of those layers. The endpoint's errors become responses
through the app's own exception handlers, so they look as they do anywhere else. Every
other request, a predict path with another method included, goes through the app as before.
"""

import inspect
from collections.abc import Awaitable, Callable
from typing import cast

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class PredictLane:
    def __init__(self, app: ASGIApp, api: FastAPI, routes: list[BaseRoute]) -> None:
        """routes: POST routes whose endpoint takes only the request (checked here)."""
        self.app = app
        self.api = api
        self.routes = [r for r in routes if isinstance(r, APIRoute)]
        assert self.routes and all(
            r.methods == {"POST"} and list(inspect.signature(r.endpoint).parameters) == ["request"]
            for r in self.routes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for route in self.routes:
                match = route.path_regex.match(scope["path"])
                if match is not None:
                    # What the router would have set: metrics label requests by route.
                    scope.update(
                        path_params=match.groupdict(), route=route, endpoint=route.endpoint
                    )
                    await self._call(route.endpoint, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _call(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise  # a bug: the app's outer layer logs it and answers 500
            response = await handler(request, exc)
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler | None:
        """The handler the app would pick (most specific class first); none for a bare
        Exception, which is left to the server-error layer, as in the app."""
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            handler = self.api.exception_handlers.get(cls)
            if handler is not None:
                return cast(Handler, handler)  # app/api/errors.py: all of them async
        return None
