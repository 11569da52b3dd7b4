"""The admin HTTP application."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dinomail.settings import Settings
from dinomail.store import Store


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings, store: Store) -> Starlette:
    app = Starlette(routes=[Route("/healthz", healthz)])
    app.state.settings = settings
    app.state.store = store
    return app
