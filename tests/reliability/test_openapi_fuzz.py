"""schemathesis against the sandbox's own OpenAPI document: no input gets a 5xx.

Every operation of `/api/v1/openapi.json` is fuzzed from its schema. Private operations are
signed for real (over the exact bytes httpx sends, with the demo key) on half the cases, so
the fuzz reaches the handlers and the engine; the other half keep schemathesis's generated
headers and exercise the signature check. Every answer must be the documented envelope with
a status below 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import RunningSandbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signing import now_ms, sign

from reconciler import jsonnum
from reconciler.sandbox.app import openapi

SCHEMA = schemathesis.openapi.from_dict(openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    from reconciler.sandbox.server import SandboxServer

    path = tmp_path_factory.mktemp("fuzz") / "sandbox.db"
    running = RunningSandbox(SandboxServer(path, rate_limit=10_000_000).start())
    yield running
    running.close()


def send(client: httpx.Client, kwargs: dict[str, Any], sign_it: bool) -> httpx.Response:
    content = b"" if "json" not in kwargs else json.dumps(kwargs["json"]).encode()
    headers = {k: v for k, v in kwargs["headers"].items() if k.lower().startswith("x-api-key")}
    headers["Content-Type"] = "application/json"
    request = client.build_request(
        kwargs["method"], kwargs["url"], params=kwargs.get("params"), content=content,
        headers=headers,
    )  # fmt: skip
    if sign_it:
        stamp = str(now_ms())
        target = request.url.raw_path.decode("latin-1")
        request.headers["X-API-KEY-ID"] = "demo-key"
        request.headers["X-API-KEY-TS"] = stamp
        request.headers["X-API-KEY-SIGN"] = sign(
            "demo-secret", request.method, target, stamp, content
        )
        request.headers["X-API-KEY-SECRET"] = "demo-secret"
    return client.send(request)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_generated_request_gets_a_server_error(
    fuzz_target: RunningSandbox, operation: Any
) -> None:
    with httpx.Client(timeout=30) as client:

        @given(case=operation.as_strategy(), sign_it=st.booleans())
        @settings(
            max_examples=12,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any, sign_it: bool) -> None:
            kwargs = case.as_transport_kwargs(base_url=fuzz_target.api_url)
            try:
                response = send(client, kwargs, sign_it)
            except (httpx.InvalidURL, UnicodeEncodeError, ValueError):
                return  # not expressible as an HTTP request: nothing reached the server
            assert response.status_code < 500, (kwargs, response.text[:500])
            payload = jsonnum.loads(response.content)
            assert isinstance(payload, dict) and isinstance(payload.get("success"), bool)

        check()
