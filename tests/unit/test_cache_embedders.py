"""Embedders against real endpoints: an OpenAI-compatible /v1/embeddings aiohttp test server (success, auth
header, errors, malformed bodies), Bedrock Titan through botocore's Stubber, and local model resolution."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.response import StreamingBody
from botocore.stub import Stubber

from neuroscale.cache.embedders import BedrockTitanEmbedder, EmbedderError, OpenAIEmbedder, resolve_local_model
from neuroscale.cache.settings import CacheConfigError


def make_embeddings_app(seen: list[dict[str, Any]], status: int = 200, body: Any = None) -> web.Application:
    async def embeddings(request: web.Request) -> web.Response:
        payload = await request.json()
        seen.append({"payload": payload, "auth": request.headers.get("Authorization")})
        if body is not None:
            return web.json_response(body, status=status)
        data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(payload["input"])]
        return web.json_response({"object": "list", "data": list(reversed(data)), "model": payload["model"]}, status=status)

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    return app


@pytest.fixture
async def server_factory() -> AsyncIterator[Any]:
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/v1"))

    yield start
    for server in servers:
        await server.close()


async def test_openai_embedder_orders_by_index_and_sends_key(server_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    url = await server_factory(make_embeddings_app(seen))
    monkeypatch.setenv("EMBED_KEY", "sk-test")
    embedder = OpenAIEmbedder(url, "text-embedding-3-small", api_key_env="EMBED_KEY")
    vectors = await embedder.embed(["a", "abcd"])
    await embedder.close()
    assert vectors == [[1.0, 1.0, 0.0], [4.0, 1.0, 0.0]]
    assert seen == [{"payload": {"model": "text-embedding-3-small", "input": ["a", "abcd"]}, "auth": "Bearer sk-test"}]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [(500, {"error": {"message": "overloaded"}}, "answered 500"), (200, {"data": "nope"}, "not OpenAI-shaped"),
     (200, {"data": []}, "asked for 1 embeddings, got 0")],
)
async def test_openai_embedder_errors_are_clear(server_factory: Any, status: int, body: Any, message: str) -> None:
    url = await server_factory(make_embeddings_app([], status=status, body=body))
    embedder = OpenAIEmbedder(url, "m")
    with pytest.raises(EmbedderError, match=message):
        await embedder.embed(["a"])
    await embedder.close()


async def test_openai_embedder_missing_key_and_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(EmbedderError, match="NO_SUCH_KEY"):
        await OpenAIEmbedder("http://127.0.0.1:9/v1", "m", api_key_env="NO_SUCH_KEY").embed(["a"])
    embedder = OpenAIEmbedder("http://127.0.0.1:9/v1", "m", timeout_seconds=2)
    with pytest.raises(EmbedderError, match="unreachable"):
        await embedder.embed(["a"])
    await embedder.close()


def titan_body(vector: list[float]) -> StreamingBody:
    raw = json.dumps({"embedding": vector, "inputTextTokenCount": 3}).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


async def test_bedrock_titan_through_stubber() -> None:
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    model = "amazon.titan-embed-text-v2:0"
    with Stubber(client) as stub:
        for text, vector in (("first", [0.1, 0.2]), ("second", [0.3, 0.4])):
            stub.add_response(
                "invoke_model",
                {"body": titan_body(vector), "contentType": "application/json"},
                {"modelId": model, "body": json.dumps({"inputText": text}), "contentType": "application/json", "accept": "application/json"},
            )
        stub.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
        embedder = BedrockTitanEmbedder(model, client=client)
        assert await embedder.embed(["first", "second"]) == [[0.1, 0.2], [0.3, 0.4]]
        with pytest.raises(EmbedderError, match="ThrottlingException"):
            await embedder.embed(["third"])
        stub.assert_no_pending_responses()


def test_local_model_resolves_offline_only(tmp_path: Any) -> None:
    assert resolve_local_model("all-MiniLM-L6-v2").endswith("model")
    assert resolve_local_model(str(tmp_path)) == str(tmp_path)
    with pytest.raises(CacheConfigError, match="never downloaded"):
        resolve_local_model("BAAI/bge-small-en")
