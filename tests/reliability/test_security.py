"""Secrets stay secret, and the doors that must be shut are shut.

- a distinctive secret never appears in any output of a real `reconciler` process (stdout,
  stderr with `-vv`, journal, saved plan, anything it writes), across success, unknown
  outcomes, refusals, a network failure and `doctor` (text and json);
- nor does the lock server's DSN (or its password), across a shared-lock apply, a lock held
  by another, an unreachable lock server and a DSN that does not parse;
- plain `http://` is refused except to loopback;
- a credentials file others can read is refused (`reconciler/run/credentials.py`);
- the sandbox refuses replayed and expired signatures.
"""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from cli_process import run_cli, sandbox_env
from conftest import RunningSandbox, SandboxFactory
from postgres_server import PostgresServer
from pydantic import SecretStr
from signing import expect_error, now_ms, signed_request

from reconciler.cli.root import run
from reconciler.levret.settings import ClientSettings
from reconciler.run.credentials import CredentialsFileError, load_credentials_file
from reconciler.run.lock import LockOptions, account_lock

SECRET = "Zq7-leak-canary-3f9b1c2e8d4a6f0b-DO-NOT-PRINT"
LOCK_PASSWORD = "Lk4-lock-canary-9a2e7c1d5b3f-DO-NOT-PRINT"
DESIRED = """\
version: 1
account: {user_id: canary}
symbols:
  BTC_USDT:
    position: {side: long, size: 0.3, leverage: 5}
    orders: [{side: buy, price: 40000, size: 0.01}]
  ETH_USDT:
    position: {side: short, size: 2, leverage: 5, take_profit: 2000}
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_secret_appears_in_no_output_of_any_run(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(rate_limit=1_000_000)
    sandbox.create_account("canary", "canary-key", SECRET, balance=1_000_000)
    tmp_path = tmp_path / "work"  # the sandbox's own database (which holds the key) stays out
    tmp_path.mkdir()
    (tmp_path / "desired.yaml").write_text(DESIRED)
    env = sandbox_env(sandbox, LEVRET_API_KEY_ID="canary-key", LEVRET_API_KEY_SECRET=SECRET)
    env.pop("LEVRET_USER_ID")
    outputs: list[str] = []
    runs = [
        ("-vv", "plan", "-f", "desired.yaml", "--out", "plan.json", "--format", "json"),
        ("-vv", "show", "plan.json"),
    ]
    for args in runs:
        outputs.append(run_cli(tmp_path, env, *args)[1])
    owned = {**env, "LEVRET_USER_ID": "canary"}
    for output_format in ("text", "json"):
        doctor = ("-vv", "doctor", "--format", output_format, "--stream-wait", "0")
        code, text = run_cli(tmp_path, owned, *doctor)
        assert code == 0, text
        outputs.append(text)
    sandbox.set_faults({"seed": 3, "drop_after_commit": 0.3, "garbage_after_commit": 0.2})
    code, text = run_cli(tmp_path, env, "-vv", "apply", "-f", "desired.yaml", "--auto-approve")
    outputs.append(text)
    assert code in (0, 5), text
    sandbox.set_faults({})
    # A refusal (wrong key), and a network failure (nothing listening).
    wrong = {**env, "LEVRET_API_KEY_SECRET": SECRET + "x"}
    outputs.append(run_cli(tmp_path, wrong, "-vv", "plan", "-f", "desired.yaml")[1])
    gone = {**env, "LEVRET_BASE_URL": f"http://127.0.0.1:{closed_port()}/api/v1"}
    code, text = run_cli(tmp_path, gone, "-vv", "apply", "-f", "desired.yaml", "--auto-approve")
    outputs.append(text)
    assert code == 1 and "Error" in text

    assert any(tmp_path.rglob("*.jsonl")) and (tmp_path / "plan.json").exists()
    outputs.extend(written_text(tmp_path))
    leaks = [text for text in outputs if SECRET in text or SECRET[:20] in text]
    assert leaks == []
    assert any("canary-key" in text or "POST" in text for text in outputs)  # -vv did log


def written_text(*directories: Path) -> list[str]:
    return [
        path.read_bytes().decode("utf-8", "replace")
        for directory in directories
        for path in directory.rglob("*")
        if path.is_file()
    ]


def test_the_lock_dsn_appears_in_no_output_of_any_run(
    sandbox_factory: SandboxFactory, tmp_path: Path, postgres: PostgresServer
) -> None:
    sandbox = sandbox_factory(rate_limit=1_000_000)
    sandbox.create_account("canary", "canary-key", SECRET, balance=1_000_000)
    work, state = tmp_path / "work", tmp_path / "state"
    work.mkdir()
    (work / "desired.yaml").write_text(DESIRED)
    dsn = f"{postgres.dsn} password={LOCK_PASSWORD}"  # the server trusts the socket
    env = sandbox_env(sandbox, LEVRET_API_KEY_ID="canary-key", LEVRET_API_KEY_SECRET=SECRET,
                      RECONCILER_LOCK_DSN=dsn, RECONCILER_STATE_DIR=str(state))  # fmt: skip
    env.pop("LEVRET_USER_ID")
    apply = ("-vv", "apply", "-f", "desired.yaml", "--auto-approve")
    outputs: list[str] = []
    code, text = run_cli(work, env, *apply)
    assert code == 0 and "converged" in text, text
    outputs.append(text)
    held = account_lock(None, LockOptions(dsn=SecretStr(dsn)), base_url=sandbox.api_url,
                        user_id="canary", environ={})  # fmt: skip
    with held:
        for extra in ((), ("--lock-dsn", dsn)):
            code, text = run_cli(work, env, *apply, *extra)
            assert code == 6 and "PostgreSQL advisory lock" in text, text
            outputs.append(text)
    unreachable = f"host={tmp_path} port=1 user=postgres password={LOCK_PASSWORD}"
    for bad in (unreachable, f"password={LOCK_PASSWORD} not-a-dsn"):
        code, text = run_cli(work, {**env, "RECONCILER_LOCK_DSN": bad}, *apply)
        assert code == 1 and "RECONCILER_LOCK_DSN" in text, text
        outputs.append(text)
    outputs.extend(written_text(work, state))
    assert any("journal" in str(path) for path in work.rglob("*.jsonl"))
    leaks = [text for text in outputs if LOCK_PASSWORD in text or postgres.dsn in text]
    assert leaks == []


def test_plain_http_is_refused_except_to_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in ("http://api.levret.io/api/v1", "http://10.0.0.7:8080/api/v1", "ftp://x/api"):
        with pytest.raises(ValueError, match=r"plain http|https"):
            ClientSettings(api_key_id="k", api_key_secret="s", user_id="u", base_url=url)
    for url in ("http://127.0.0.1:9/api/v1", "http://[::1]:9/api/v1", "http://localhost:9/x"):
        ClientSettings(api_key_id="k", api_key_secret="s", user_id="u", base_url=url)
    (tmp_path / "desired.yaml").write_text(DESIRED)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEVRET_API_KEY_ID", "k")
    monkeypatch.setenv("LEVRET_API_KEY_SECRET", SECRET)
    code = run(["plan", "-f", "desired.yaml", "--base-url", "http://api.levret.io/api/v1"])
    captured = capsys.readouterr()
    assert code == 1 and "http" in captured.err and SECRET not in captured.err + captured.out


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_credentials_file_is_read(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "levret.env"
    path.write_text(
        f"# key for CI\nLEVRET_API_KEY_ID=ci-key\nexport LEVRET_API_KEY_SECRET='{SECRET}'\n\n"
    )
    path.chmod(mode)
    assert load_credentials_file(path) == {
        "LEVRET_API_KEY_ID": "ci-key",
        "LEVRET_API_KEY_SECRET": SECRET,
    }


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o604, 0o660, 0o602, 0o666])
def test_credentials_file_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "levret.env"
    path.write_text(f"LEVRET_API_KEY_SECRET={SECRET}\n")
    path.chmod(mode)
    with pytest.raises(CredentialsFileError) as refused:
        load_credentials_file(path)
    assert f"{stat.S_IMODE(mode):04o}" in str(refused.value) and "chmod 600" in str(refused.value)
    assert SECRET not in str(refused.value)


def test_credentials_file_problems_never_echo_a_value(tmp_path: Path) -> None:
    path = tmp_path / "levret.env"
    path.write_text(f"{SECRET}\n")  # a bare secret pasted without its name
    path.chmod(0o600)
    with pytest.raises(CredentialsFileError) as refused:
        load_credentials_file(path)
    assert ":1:" in str(refused.value) and SECRET not in str(refused.value)
    link = tmp_path / "link.env"
    link.symlink_to(path)
    with pytest.raises(CredentialsFileError):
        load_credentials_file(link)
    with pytest.raises(CredentialsFileError):
        load_credentials_file(tmp_path / "missing.env")


def test_sandbox_refuses_replayed_and_expired_signatures(sandbox: RunningSandbox) -> None:
    path = "/api/v1/wallet/account-overview"
    stamp = now_ms()
    first = signed_request(sandbox.base_url, "GET", path, ts=stamp)
    assert first.status_code == 200
    expect_error(signed_request(sandbox.base_url, "GET", path, ts=stamp), 401, "REPLAYED_REQUEST")
    old = now_ms() - 10 * 60_000
    expect_error(signed_request(sandbox.base_url, "GET", path, ts=old), 401, "SIGNATURE_EXPIRED")
    future = now_ms() + 10 * 60_000
    expect_error(
        signed_request(sandbox.base_url, "GET", path, ts=future), 401, "TIMESTAMP_IN_FUTURE"
    )
    expect_error(
        signed_request(sandbox.base_url, "GET", path, secret="demo-secretx", send_secret=False),
        401,
        "INVALID_SIGNATURE",
    )
