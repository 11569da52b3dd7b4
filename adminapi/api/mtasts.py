"""A domain's MTA-STS policy in the API: `/api/virtualdomain/<id>/mta-sts/`.

GET shows the policy (or `published: false` and the defaults), the served text, its id and
the `_mta-sts` TXT record to publish; PUT or PATCH publishes or changes it (fields not given
keep their value); DELETE stops serving it. A domain admin manages their own domains' policies.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adminapi.api.auth import authenticate, require_write
from adminapi.api.body import read_json_object
from adminapi.api.paging import check_parameters
from adminapi.api.resource import object_id
from adminapi.api.serialize import resource_uri
from dinomail.dnscheck.model import iso_time
from dinomail.store import Store
from dinomail.store import mtasts as mtasts_store
from dinomail.store.common import Row


def _body(row: Row) -> dict[str, Any]:
    return {"domain": resource_uri("virtualdomain", row["domain_id"]),
            **{key: value for key, value in row.items() if key != "domain_id"},
            "updated_at": iso_time(row["updated_at"]) if row["updated_at"] else None}


async def mta_sts_endpoint(request: Request) -> Response:
    check_parameters(request, ())
    pk = object_id(request)
    caller = await authenticate(request)
    store: Store = request.app.state.store
    mx_host = request.app.state.settings.MX_HOST
    if request.method == "GET":
        async with store.read() as conn:
            return JSONResponse(_body(await mtasts_store.get(conn, caller.scope, pk, mx_host)))
    require_write(caller)
    if request.method == "DELETE":
        async with store.write() as conn:
            await mtasts_store.delete(conn, caller.actor, caller.scope, pk, mx_host)
        return Response(status_code=204)
    data = await read_json_object(request)
    async with store.write() as conn:
        row = await mtasts_store.save(conn, caller.actor, caller.scope, pk, data, mx_host)
    return JSONResponse(_body(row))


def routes() -> list[tuple[str, Any, list[str]]]:
    """(path, endpoint, methods) under a domain's URI."""
    return [("mta-sts/", mta_sts_endpoint, ["GET", "PUT", "PATCH", "DELETE"])]
