"""AWS event-stream messages (the binary framing of ConverseStream and InvokeEndpointWithResponseStream: prelude,
string headers, payload, CRC32s) and a loopback server that streams them, so botocore's own parser reads real bytes.

botocore's Stubber cannot return an event stream (its response validator rejects EventStream objects) and moto
implements neither streaming operation, hence this server.
"""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any

from aiohttp import web

from tests.support.stub_upstream import serve_on_loopback

_STRING_HEADER = 7


def _headers(headers: dict[str, str]) -> bytes:
    out = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", _STRING_HEADER, len(raw_value)) + raw_value
    return out


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    header_bytes = _headers(headers)
    total = 12 + len(header_bytes) + len(payload) + 4
    prelude = struct.pack("!II", total, len(header_bytes))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + header_bytes + payload
    return message + struct.pack("!I", binascii.crc32(message) & 0xFFFFFFFF)


def encode_event(event_type: str, payload: dict[str, Any] | bytes) -> bytes:
    """An `event` message; a dict payload is JSON (Converse events), bytes are sent raw (SageMaker PayloadPart)."""
    if isinstance(payload, bytes):
        headers = {":event-type": event_type, ":content-type": "application/octet-stream", ":message-type": "event"}
        return encode_message(headers, payload)
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, json.dumps(payload).encode())


def encode_exception(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_message(headers, json.dumps({"message": message}).encode())


class EventStreamServer:
    """A loopback HTTP server answering the two streaming operations moto does not implement, ConverseStream and
    InvokeEndpointWithResponseStream, with scripted event-stream bytes, so boto3 parses them off a real socket.

        async with EventStreamServer() as aws:
            aws.script = [encode_event("messageStart", {"role": "assistant"}), ...]
            boto3.client("bedrock-runtime", endpoint_url=aws.url, ...)
    """

    def __init__(self) -> None:
        self.script: list[bytes] = []
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.piece = 7
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> EventStreamServer:
        app = web.Application()
        app.router.add_post("/model/{model_id}/converse-stream", self._serve)
        app.router.add_post("/endpoints/{endpoint}/invocations-response-stream", self._serve)
        self._runner, port = await serve_on_loopback(app)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, json.loads(await request.read())))
        response = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
        await response.prepare(request)
        data = b"".join(self.script)
        # Small writes split messages across reads, as a real network does.
        for start in range(0, len(data), self.piece):
            await response.write(data[start:start + self.piece])
        await response.write_eof()
        return response
