"""A cosignature that is not the witness's, or is the witness's for another log or head, is
refused by the node that asked for it and never recorded (threat model W5). The witness is a
real socket on 127.0.0.1 answering the node's cosign request with what the test chooses."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hotline.core.card import Identity
from hotline.core.encoding import b64encode
from hotline.core.witness import cosign
from hotline.errors import VerificationError
from hotline.node.home import NodeHome
from hotline.node.runtime import Node
from hotline.transcript.witnessing import latest_cosignature


async def _witness_server(answer: list[bytes]) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            body = answer[0]
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.mark.parametrize("forgery", ["none", "another key", "another log", "another head"])
def test_a_forged_or_mismatched_cosignature_is_refused_and_not_recorded(
    tmp_path: Path, forgery: str
) -> None:
    now = datetime.now(UTC)

    async def run() -> None:
        answer = [b""]
        server = await _witness_server(answer)
        port = server.sockets[0].getsockname()[1]
        helsinki = NodeHome.init(
            tmp_path / "helsinki",
            name="helsinki",
            listen=f"127.0.0.1:{port}",
            display_names={},
            role="witness",
            tls=False,
        )
        washington = NodeHome.init(
            tmp_path / "washington", name="washington", listen="127.0.0.1:1", display_names={}
        )
        mallory = NodeHome.init(
            tmp_path / "mallory", name="mallory", listen="127.0.0.1:2", display_names={}
        )
        card = helsinki.card(now)
        washington.add_peer(card, card.fingerprint, now)
        node = Node(washington)
        try:
            head = node.own_head(max_age_s=0.0)
            signer, log, size = helsinki.identity, "washington", head.size
            if forgery == "another key":  # mallory's keys under helsinki's name
                signer = Identity("helsinki", mallory.identity.signing, mallory.identity.decryption)
            elif forgery == "none":  # the control: the witness's own, for this head
                pass
            elif forgery == "another log":
                log = "moscow"
            else:
                size = head.size + 1
            signature = cosign(signer, log=log, size=size, root=head.root, time=now)
            answer[0] = json.dumps({"cosignature": b64encode(signature.statement)}).encode()
            if forgery == "none":
                assert await node.witness_once("helsinki") == signature
                with washington.store.read() as conn:
                    assert latest_cosignature(conn, "helsinki") is not None
                return
            with pytest.raises(VerificationError):
                await node.witness_once("helsinki")
            with washington.store.read() as conn:
                assert latest_cosignature(conn, "helsinki") is None
        finally:
            await node.stop()
            server.close()
            await server.wait_closed()
            for home in (helsinki, washington, mallory):
                home.close()

    asyncio.run(run())
