"""Shared fixtures: real sandbox servers on ephemeral loopback ports, and hypothesis profiles.

`sandbox` is a fresh, demo-seeded server per test (file database in `tmp_path`);
`sandbox_factory` starts more, with options, and stops them all at teardown. The helpers on
`RunningSandbox` go through the unsigned control API over HTTP, as other tools do.
`postgres` is one real PostgreSQL server for the session (`tests/postgres_server.py`).

The account locks of every test (and of the processes tests start, which inherit the
environment) live under a temporary `RECONCILER_STATE_DIR`, never in the real home
directory, and a developer's `RECONCILER_LOCK_DSN` does not leak into the tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings
from postgres_server import PostgresServer, running_postgres

from reconciler import jsonnum
from reconciler.run.lock import ENV_LOCK_DSN, ENV_STATE_DIR
from reconciler.sandbox.engine import Exchange
from reconciler.sandbox.server import SandboxServer

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=50, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def lock_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every account lock of the session in a temporary state directory."""
    saved = {name: os.environ.get(name) for name in (ENV_STATE_DIR, ENV_LOCK_DSN)}
    directory = tmp_path_factory.mktemp("state")
    os.environ[ENV_STATE_DIR] = str(directory)
    os.environ.pop(ENV_LOCK_DSN, None)
    yield directory
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on a unix socket, for the session."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def anyio_backend() -> str:
    """`@pytest.mark.anyio` tests run on asyncio, the loop the client and the sandbox use."""
    return "asyncio"


class RunningSandbox:
    """A started `SandboxServer` plus control-API helpers for tests.

    `http` is a plain (unsigned) client with `base_url` set, for public and control calls.
    """

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.base_url, timeout=30, verify=False)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def api_url(self) -> str:
        return self.server.api_url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def exchange(self) -> Exchange:
        return self.server.exchange

    def control(self, method: str, path: str, body: Any = None) -> Any:
        """Call `/_sandbox/<path>` and return `data`; fail the test on an error envelope."""
        content = None if body is None else jsonnum.dumps(body)
        response = self.http.request(method, "/_sandbox/" + path.lstrip("/"), content=content)
        payload = jsonnum.loads(response.content)
        assert response.status_code == 200 and payload["success"], payload
        return payload["data"]

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", "requests")
        return result

    def clear_requests(self) -> None:
        self.control("DELETE", "requests")

    def set_prices(self, prices: dict[str, Any]) -> Any:
        return self.control("POST", "prices", {k: Decimal(str(v)) for k, v in prices.items()})

    def set_faults(self, faults: dict[str, Any]) -> Any:
        return self.control("POST", "faults", faults)

    def set_rate_limit(self, limit: int, window: float) -> Any:
        return self.control("POST", "rate-limit", {"limit": limit, "window": Decimal(str(window))})

    def reset(self) -> None:
        self.control("POST", "reset")

    def create_account(
        self,
        user_id: str,
        key_id: str | None = None,
        secret: str | None = None,
        scopes: tuple[str, ...] = ("read", "trade"),
        balance: Decimal | int = 100_000,
    ) -> Any:
        return self.control(
            "POST",
            "accounts",
            {
                "userId": user_id,
                "apiKeyId": key_id or f"{user_id}-key",
                "apiKeySecret": secret or f"{user_id}-secret",
                "scopes": list(scopes),
                "balance": balance,
            },
        )

    def close(self) -> None:
        self.http.close()
        self.server.stop()


SandboxFactory = Callable[..., RunningSandbox]


@pytest.fixture
def sandbox_factory(tmp_path: Path) -> Iterator[SandboxFactory]:
    """`factory(rate_limit=, rate_window=, db_path=, seed=, wire_style=)` -> a started server."""
    started: list[RunningSandbox] = []
    counter = iter(range(1_000_000))

    def factory(
        *,
        rate_limit: int = 1200,
        rate_window: float = 60.0,
        db_path: str | Path | None = None,
        seed: bool = True,
        wire_style: str = "documented",
    ) -> RunningSandbox:
        path = db_path if db_path is not None else tmp_path / f"sandbox-{next(counter)}.db"
        server = SandboxServer(
            path, rate_limit=rate_limit, rate_window=rate_window, seed=seed, wire_style=wire_style
        )
        running = RunningSandbox(server.start())
        started.append(running)
        return running

    yield factory
    for running in reversed(started):
        running.close()


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory) -> RunningSandbox:
    """A fresh demo-seeded sandbox on an ephemeral port, with a file database."""
    return sandbox_factory()
