"""SageMaker AI tier: InvokeEndpoint / InvokeEndpointWithResponseStream through boto3 on worker threads."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import boto3

from neuroscale.gateway import sagemaker_translation as translation
from neuroscale.gateway.config import Limits, SageMakerTier
from neuroscale.gateway.protocol import Endpoint
from neuroscale.gateway.upstreams.aws import ThreadRunner, client_config, new_response_id
from neuroscale.gateway.upstreams.base import UpstreamError


class SageMakerUpstream:
    def __init__(self, tier: SageMakerTier, client: Any = None, limits: Limits | None = None) -> None:
        """`client` is a sagemaker-runtime client; by default one is built from the tier (ambient AWS credentials)."""
        self.name = tier.name
        self._tier = tier
        self._client = client or boto3.client(
            "sagemaker-runtime", region_name=tier.region, endpoint_url=tier.endpoint_url, config=client_config(tier.timeouts)
        )
        self._threads = ThreadRunner(tier.name)
        self._limits = limits or Limits()
        self._target = {"EndpointName": tier.endpoint_name, "ContentType": "application/json"}
        if tier.inference_component:
            self._target["InferenceComponentName"] = tier.inference_component

    def unsupported_parameter(self, endpoint: Endpoint, body: dict[str, Any]) -> str | None:
        return translation.unsupported_parameter(self._tier.payload, body)

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        request = translation.to_request(endpoint, self._tier.payload, body, stream=False)

        limit = self._limits.max_response_bytes

        def invoke() -> bytes:
            response = self._client.invoke_endpoint(Body=request, Accept="application/json", **self._target)
            body = response["Body"]
            try:
                raw: bytes = body.read(limit + 1)
            finally:
                body.close()
            if len(raw) > limit:
                raise UpstreamError("error", f"tier {self.name}: the answer is larger than {limit} bytes")
            return raw

        raw = await self._threads.call(invoke)
        return translation.from_response(endpoint, self._tier.payload, raw, self._tier.endpoint_name, new_response_id(), int(time.time()))

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        request = translation.to_request(endpoint, self._tier.payload, body, stream=True)
        decoder = translation.StreamDecoder(
            endpoint, self._tier.payload, self._tier.endpoint_name, new_response_id(), int(time.time()),
            max_line_bytes=self._limits.max_event_bytes,
        )
        budget = self._limits.max_response_bytes
        events = self._threads.iterate(
            lambda: self._client.invoke_endpoint_with_response_stream(Body=request, **self._target)["Body"]
        )
        try:
            async for event in events:
                if "PayloadPart" in event:
                    part = event["PayloadPart"].get("Bytes", b"")
                    budget -= len(part)
                    if budget < 0:
                        raise UpstreamError("error", f"tier {self.name}: the stream is larger than "
                                                     f"{self._limits.max_response_bytes} bytes")
                    for chunk in decoder.feed(part):
                        yield chunk
                elif "ModelStreamError" in event or "InternalStreamFailure" in event:
                    raise UpstreamError("error", f"tier {self.name}: SageMaker stream failed: {event}")
        finally:
            await events.aclose()
        for chunk in decoder.close():
            yield chunk
        if not decoder.finished:
            raise UpstreamError("error", f"tier {self.name}: the SageMaker stream ended without a finish reason")

    async def close(self) -> None:
        self._threads.close()

