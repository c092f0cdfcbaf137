"""A stopping server process ends within STOP_DEADLINE_S even when its shutdown hangs."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hotline.node.limits import STOP_DEADLINE_S

#: An ASGI application whose shutdown never finishes, served by hotline's bounded server.
STUCK_SERVER = textwrap.dedent(
    """
    import asyncio, logging, sys

    import uvicorn

    from hotline.node.limits import bounded_server

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                    print("started", flush=True)
                else:
                    await asyncio.Event().wait()  # a stop that never ends: the defect
        else:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(
        app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", log_level="info",
        timeout_graceful_shutdown=1,
    )
    bounded_server(config).run()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_stuck_stop_is_cut_short_with_its_stacks_logged(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_SERVER)
    errors = tmp_path / "stderr.log"
    with errors.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), str(_free_port())],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == b"started"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=STOP_DEADLINE_S + 20)
        stopped_after = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    log = errors.read_text()
    assert code == 1, log
    assert STOP_DEADLINE_S - 0.5 < stopped_after < STOP_DEADLINE_S + 5, stopped_after
    assert "the stop is late: " in log  # the asyncio tasks, while the loop still runs
    assert "still running: " in log
    assert "Timeout (0:00:0" in log and "most recent call first" in log  # faulthandler's dump


def test_a_node_whose_address_is_taken_says_so_and_exits_9(tmp_path: Path) -> None:
    port = _free_port()
    hotline = [sys.executable, "-m", "hotline"]
    home = str(tmp_path / "taken")
    listen = f"127.0.0.1:{port}"
    subprocess.run(
        [*hotline, "init", "--name", "taken", "--dir", home, "--listen", listen, "--no-passphrase"],
        check=True,
        capture_output=True,
    )
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = subprocess.run(
            [*hotline, "serve", "--dir", home],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 9, result.stderr
    assert f"could not serve on 127.0.0.1:{port}" in " ".join(result.stderr.split())
