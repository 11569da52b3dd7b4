"""Property-based tests of the admin API against its own OpenAPI document (schemathesis).

The API runs in uvicorn on a loopback port, over a database seeded with one object of each
kind, and schemathesis sends it valid and invalid requests generated from `/api/openapi.json`.
Every answer must be a documented status with a body matching the document, never a 5xx, and
every request that breaks the document must be refused.

The examples are the same at every run, so a CI failure reproduces; to explore further, set
SCHEMATHESIS_RANDOM=1 and SCHEMATHESIS_EXAMPLES=200 in the environment.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.core.failures import Failure, FailureGroup

from adminapi.app import create_app
from dinomail import migrate
from dinomail.store import EVERYTHING, Store, aliasdomains, aliases, authblocks, policy
from tests.conftest import new_postgres_database
from tests.support.adminapi import (
    FAST_ARGON2,
    add_admin,
    add_domain,
    add_mailbox,
    api_settings,
)
from tests.support.ports import free_port

# Bounded so that the whole run stays well under a minute.
EXAMPLES_PER_OPERATION = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "20"))
REFUSALS = ["400", "401", "403", "404", "405", "409", "413"]
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


def _describe(failure: BaseException) -> str:
    # A FailureGroup's own text holds the reproducing curl command; keep it whole.
    if not isinstance(failure, BaseExceptionGroup):
        return str(failure)
    return "\n".join(
        [str(failure), *(f"  - {type(sub).__name__}: {sub}" for sub in failure.exceptions)]
    )


class ApiServer:
    """The admin API in uvicorn, in a thread with its own event loop and store."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.port = free_port()
        self.headers: dict[str, str] = {}
        self._ready = threading.Event()
        self._server: uvicorn.Server | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30) or self._error:
            raise RuntimeError(f"the API server did not start: {self._error}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported by start()
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        store = Store(self.url)
        if store.dialect == "sqlite":
            await migrate.upgrade(store.engine)
        root = await add_admin(store, "root", superadmin=True)
        self.headers = root.headers
        domain = await add_domain(store, "example.org")
        await add_domain(store, "other.org")
        await add_mailbox(store, "alice@example.org")
        async with store.write() as conn:
            await aliases.create(conn, "test", EVERYTHING,
                                 {"source": "info@example.org", "destination": "alice@example.org"})
            await aliasdomains.create(conn, "test", EVERYTHING,
                                      {"name": "example.net", "target_domain_id": domain["id"]})
            # Sending counts and a blocked login, so that their objects are not all empty.
            now = time.time()
            await policy.add_counts(conn, [
                policy.SendCount(kind, name, size, int(now) - int(now) % size, 2, 3)
                for kind, name in (("mailbox", "alice@example.org"), ("domain", "example.org"))
                for size in (600, 3600)
            ], writer="seed")
            moment = datetime.now(UTC)
            await authblocks.write_blocks(conn, "seed", [authblocks.Block(
                "login", "alice@example.org", 30, moment, moment + timedelta(days=1))], [])
        app = create_app(api_settings(ALLOWED_HOSTS=("127.0.0.1",)), store)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        serving = asyncio.create_task(self._server.serve())
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.01)
        self._ready.set()
        await serving
        await store.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    from dinomail.store import admins

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'dinomail.sqlite3'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres"))
    # Admin passwords hashed cheaply: the seeding is not what is tested here.
    original = admins._hasher
    admins._hasher = FAST_ARGON2
    server = ApiServer(url)
    try:
        server.start()
    finally:
        admins._hasher = original
    yield server
    server.stop()


@pytest.fixture
def api_schema(api_server: ApiServer):  # type: ignore[no-untyped-def]
    base = f"http://127.0.0.1:{api_server.port}"
    config = schemathesis.Config.from_dict({
        "headers": api_server.headers,
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "mode": "all"},
        # An invalid body may also be too large (413) or lack credentials' rights (403).
        "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
    })
    return schemathesis.openapi.from_url(f"{base}/api/openapi.json", config=config)


def test_api_matches_its_document(api_schema) -> None:  # type: ignore[no-untyped-def]
    """Each operation, with valid and with invalid requests; failures are reported together."""
    failures = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                # The same examples at every run: CI failures reproduce.
                derandomize=os.environ.get("SCHEMATHESIS_RANDOM") is None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case) -> None:  # type: ignore[no-untyped-def]
                case.call_and_validate(checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                # Nothing in this operation can be made invalid (no parameters, no body).
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (AssertionError, FailureGroup, Failure) as failure:
                failures.append(f"{operation.label} ({mode.value}): {_describe(failure)}")
    assert not failures, "\n\n".join(failures)
