"""Amazon Bedrock tier: Converse / ConverseStream through boto3, on worker threads, in the OpenAI shape."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import boto3

from neuroscale.gateway import bedrock_translation as translation
from neuroscale.gateway.config import BedrockTier
from neuroscale.gateway.protocol import Endpoint
from neuroscale.gateway.upstreams.aws import ThreadRunner, client_config, new_response_id
from neuroscale.gateway.upstreams.base import UpstreamError


class BedrockUpstream:
    def __init__(self, tier: BedrockTier, client: Any = None) -> None:
        """`client` is a bedrock-runtime client; by default one is built from the tier (ambient AWS credentials)."""
        self.name = tier.name
        self._tier = tier
        self._client = client or boto3.client(
            "bedrock-runtime", region_name=tier.region, endpoint_url=tier.endpoint_url, config=client_config(tier.timeouts)
        )
        self._threads = ThreadRunner(tier.name)

    def unsupported_parameter(self, endpoint: Endpoint, body: dict[str, Any]) -> str | None:
        return translation.unsupported_parameter(endpoint, body)

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        kwargs = translation.to_converse(endpoint, body, self._tier.model_id)
        response = await self._threads.call(lambda: self._client.converse(**kwargs))
        return translation.from_converse(endpoint, response, self._tier.model_id, new_response_id(), int(time.time()))

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        kwargs = translation.to_converse(endpoint, body, self._tier.model_id)
        translator = translation.ConverseStreamTranslator(endpoint, self._tier.model_id, new_response_id(), int(time.time()))
        events = self._threads.iterate(lambda: self._client.converse_stream(**kwargs)["stream"])
        try:
            async for event in events:
                for chunk in translator.translate(event):
                    yield chunk
        finally:
            await events.aclose()
        if not translator.finished:
            raise UpstreamError("error", f"tier {self.name}: the Bedrock stream ended before messageStop")

    async def close(self) -> None:
        self._threads.close()

