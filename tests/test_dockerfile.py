"""The Dockerfile, checked without a Docker daemon: its shape, and its commands on a venv.

No daemon runs the suite, so the image is not built here; instead the build stage's install
command builds a plain venv from this checkout (dependencies from the test environment, so
nothing is downloaded), the final stage's entrypoint runs `watch` from it against a real
sandbox with the image's environment, and the image's healthcheck command must pass against
it, with the image's paths mapped to a scratch directory.
"""

from __future__ import annotations

import json
import os
import shlex
import site
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import RunningSandbox

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    pairs = []
    for line in lines:
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_dockerfile_is_multi_stage_non_root_with_state_under_data_and_a_healthcheck() -> None:
    steps = instructions()
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    assert ("COPY", "--from=build /opt/reconciler /opt/reconciler") in steps
    final = steps[[keyword for keyword, _ in steps].index("FROM", 1) :]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users == ["reconciler"]
    assert ("WORKDIR", "/data") in final
    env = " ".join(rest for keyword, rest in final if keyword == "ENV")
    assert "RECONCILER_STATE_DIR=/data/state" in env
    assert any(keyword == "HEALTHCHECK" and "/healthz" in rest for keyword, rest in final)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*"  # everything is left out but what the COPY lines name
    for keyword, rest in steps:
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _target = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert f"!{source.rstrip('/')}" in {line.rstrip("/") for line in ignored}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_dockerfiles_commands_work_on_a_plain_venv(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    steps = instructions()
    venv, data, port = tmp_path / "venv", tmp_path / "data", str(_free_port())

    def mapped(text: str) -> str:
        return (
            text.replace("/opt/reconciler", str(venv))
            .replace("/src", str(ROOT))
            .replace("/data", str(data))
            .replace("9464", port)
        )

    (build,) = [rest for keyword, rest in steps if keyword == "RUN" and "pip install" in rest]
    make_venv, install = (mapped(part).strip() for part in build.split("&&"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(shlex.split(make_venv), check=True, env=env, timeout=120)
    # The dependencies come from the test environment instead of an index: same versions,
    # no download. The install itself is the Dockerfile's, from this checkout.
    (purelib,) = [Path(p) for p in site.getsitepackages() if p.endswith("site-packages")][:1]
    (new_site,) = venv.glob("lib/python*/site-packages")
    (new_site / "test-environment.pth").write_text(f"{purelib}\n")
    words = shlex.split(install)
    words[words.index("install") + 1 : words.index("install") + 1] = [
        "--no-deps", "--no-build-isolation", "--quiet",
    ]  # fmt: skip
    subprocess.run(words, check=True, env=env, timeout=300)

    data.mkdir()
    (data / "desired.yaml").write_text("version: 1\naccount: {user_id: demo}\nsymbols: {}\n")
    image_env = {
        "HOME": str(tmp_path),
        "LEVRET_API_KEY_ID": "demo-key",
        "LEVRET_API_KEY_SECRET": "demo-secret",
        "LEVRET_BASE_URL": sandbox.api_url,
    }
    for keyword, rest in steps:
        if keyword == "ENV":
            for assignment in shlex.split(rest):
                name, _, value = assignment.partition("=")
                image_env[name] = mapped(value).replace("$PATH", os.environ["PATH"])
    entrypoint = [rest for keyword, rest in steps if keyword == "ENTRYPOINT"][-1]
    command = [rest for keyword, rest in steps if keyword == "CMD"][-1]
    argv = [mapped(word) for word in json.loads(entrypoint) + json.loads(command)]
    health = [rest for keyword, rest in steps if keyword == "HEALTHCHECK"][-1]
    check = [mapped(word) for word in json.loads(health.split(" CMD ", 1)[1])]
    watcher = subprocess.Popen(
        argv, cwd=data, env=image_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert watcher.stdout is not None
        for line in watcher.stdout:  # the first cycle's verdict, as the service logs it
            if json.loads(line)["event"] == "in_sync":
                break
        # Docker retries a failing healthcheck too; the cycle's report may trail its log line.
        deadline = time.monotonic() + 30
        while True:
            done = subprocess.run(check, env=image_env, capture_output=True, timeout=30)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
        assert done.returncode == 0, done.stderr
    finally:
        watcher.terminate()
        watcher.communicate(timeout=30)
    assert watcher.returncode == 0  # SIGTERM, as `docker stop` sends: a clean stop
