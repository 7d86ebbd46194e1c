"""Hostile desired-state files: a clear error within 1 s and 100 MB, and zero requests sent.

Every file goes through the real CLI (`reconciler.cli.root.run(["plan", "-f", FILE, ...])`) pointed
at a live sandbox, whose request log must stay empty: a file that cannot be planned must not
even read the account. Memory is the peak `tracemalloc` sees during the run.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import RunningSandbox

from reconciler.cli.root import run

BAD_INPUTS = Path(__file__).resolve().parents[1] / "bad_inputs"
HEAD = "version: 1\nsymbols:\n  BTC_USDT:\n    position: "


def alias_bomb() -> bytes:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\nversion: 1\nsymbols: {}\n").encode()


def ten_megabytes() -> bytes:
    filler = "# " + "x" * 98 + "\n"
    return (HEAD + "{side: flat}\n" + filler * 100_000).encode()


def big_valid_looking() -> bytes:
    """10 MB of real YAML mapping entries, not comments."""
    rows = "".join(f"  S{i}_USDT: {{position: {{side: flat}}}}\n" for i in range(300_000))
    return ("version: 1\nsymbols:\n" + rows).encode()


def deep_nesting() -> bytes:
    return (HEAD + "[" * 5_000 + "]" * 5_000 + "\n").encode()


def deep_block_nesting() -> bytes:
    body = "".join("  " * i + f"k{i}:\n" for i in range(2_000))
    return ("version: 1\nsymbols:\n" + body).encode()


HOSTILE: dict[str, Callable[[], bytes]] = {
    "alias_bomb": alias_bomb,
    "ten_megabytes_of_comments": ten_megabytes,
    "ten_megabytes_of_symbols": big_valid_looking,
    "not_utf8": lambda: (HEAD + "{side: long, size: 1}\n# \xff\xfe\n").encode("latin-1"),
    "utf16_bom": lambda: (HEAD + "{side: flat}\n").encode("utf-16"),
    "nul_bytes": lambda: (HEAD + "{side: flat}\x00\n").encode(),
    "nan": lambda: (HEAD + "{side: long, size: .nan}\n").encode(),
    "infinity": lambda: (HEAD + "{side: long, size: .inf}\n").encode(),
    "negative_infinity": lambda: (HEAD + "{side: short, size: -.Inf}\n").encode(),
    "one_e_400": lambda: (HEAD + "{side: long, size: 1e400}\n").encode(),
    "tiny_exponent": lambda: (HEAD + "{side: long, size: 1e-400}\n").encode(),
    "huge_integer": lambda: (HEAD + "{side: long, size: " + "9" * 5000 + "}\n").encode(),
    "deep_flow_nesting": deep_nesting,
    "deep_block_nesting": deep_block_nesting,
    "tabs": lambda: b"version: 1\nsymbols:\n\tBTC_USDT:\n\t\tposition: {side: flat}\n",
    "python_object_tag": lambda: b"version: 1\nsymbols: !!python/object/apply:os.system [id]\n",
    "merge_key_bomb": lambda: b"a: &a {x: 1}\nb: {<<: *a, <<: *a}\nversion: 1\nsymbols: {}\n",
    "long_line": lambda: (HEAD + "{side: flat, note: " + "y" * 2_000_000 + "}\n").encode(),
    "binary_garbage": lambda: bytes(range(256)) * 64,
}


def corpus() -> list[tuple[str, bytes]]:
    files = [(name, make()) for name, make in HOSTILE.items()]
    for path in sorted(BAD_INPUTS.glob("*.yaml")):
        files.append(("bad_inputs/" + path.name, path.read_bytes()))
    return files


KNOWN_BUGS: dict[str, str] = {}
"""Files this test finds refused wrongly, as strict xfails until fixed (none at present)."""

CORPUS = [
    pytest.param(
        name, content, id=name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])
    )
    if name in KNOWN_BUGS
    else pytest.param(name, content, id=name)
    for name, content in corpus()
]


@pytest.fixture(scope="module")
def quiet_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    from reconciler.sandbox.server import SandboxServer

    server = SandboxServer(tmp_path_factory.mktemp("hostile") / "sandbox.db").start()
    running = RunningSandbox(server)
    yield running
    running.close()


@pytest.mark.parametrize(("name", "content"), CORPUS)
def test_hostile_file_is_refused_fast_small_and_silent(
    quiet_sandbox: RunningSandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes,
) -> None:
    path = tmp_path / "desired.yaml"
    path.write_bytes(content)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEVRET_API_KEY_ID", "demo-key")
    monkeypatch.setenv("LEVRET_API_KEY_SECRET", "demo-secret")
    monkeypatch.setenv("LEVRET_USER_ID", "demo")
    quiet_sandbox.clear_requests()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        code = run(["plan", "-f", str(path), "--base-url", quiet_sandbox.api_url])
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    captured = capsys.readouterr()
    assert code == 1, captured
    assert "Error" in captured.err and "Traceback" not in captured.err + captured.out
    assert len(captured.err) < 20_000  # the problem, not the file, is echoed
    assert elapsed < 1.0, f"{name}: {elapsed:.2f} s"
    assert peak < 100 * 1024 * 1024, f"{name}: peak {peak / 1e6:.0f} MB"
    assert quiet_sandbox.requests() == []
