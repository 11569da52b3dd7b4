"""The lookup daemon's HTTP listener (`LOOKUPD_HTTP_LISTEN`): `/metrics` and `/healthz`, and the
endpoints Dovecot calls over HTTP."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lookupd.metrics import LookupdMetrics
from lookupd.refresher import SnapshotHolder

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def create_http_app(holder: SnapshotHolder, metrics: LookupdMetrics) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        # 503 until the first snapshot: a load balancer must not send traffic that would only
        # get temporary failures.
        if holder.current is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse(
            {"status": "ok", "snapshot_age_seconds": round(metrics.current_snapshot_age(), 3)}
        )

    async def prometheus(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=PROMETHEUS_TEXT)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", prometheus)])
