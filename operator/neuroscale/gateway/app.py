"""The gateway's aiohttp application: OpenAI-compatible routes in front of the cascade, the cache, and metrics.

Responses carry `x-neuroscale-tier` (the tier that served the answer, or `cache`), `x-neuroscale-cache`
(`exact`, `semantic`, `miss` or `off`) and, when the request moved up, `x-neuroscale-escalations`
(`tier:reason` pairs in order). Cache isolation is described in `scope.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from neuroscale.gateway.cascade import Cascade, ServedStream
from neuroscale.gateway.config import GatewayConfig, Tier
from neuroscale.gateway.escalation import Reason, estimate_prompt_tokens, plan_tiers
from neuroscale.gateway.metrics import GatewayMetrics
from neuroscale.gateway.protocol import Endpoint, OpenAIError, ParsedRequest, parse_request
from neuroscale.gateway.scope import cache_scope
from neuroscale.gateway.streaming import DONE, encode_event, replay_chunks
from neuroscale.gateway.upstreams.base import Upstream, UpstreamError
from neuroscale.gateway.upstreams.openai import OpenAIUpstream

log = logging.getLogger(__name__)

TIER_HEADER = "x-neuroscale-tier"
CACHE_HEADER = "x-neuroscale-cache"
ESCALATIONS_HEADER = "x-neuroscale-escalations"


class GatewayState:
    """Everything a request needs, built on start-up and released on clean-up."""

    def __init__(self, config: GatewayConfig, metrics: GatewayMetrics, cache: Any, upstreams: Mapping[str, Upstream]):
        self.config = config
        self.metrics = metrics
        self.cache = cache
        self.given_upstreams = dict(upstreams)
        self.session: aiohttp.ClientSession | None = None
        self.cascade: Cascade | None = None
        self.ready = False


STATE = web.AppKey("neuroscale_gateway", GatewayState)
ENDPOINT = web.RequestKey("neuroscale_endpoint", str)
SERVED_BY = web.RequestKey("neuroscale_tier", str)


def build_app(
    config: GatewayConfig,
    *,
    upstreams: Mapping[str, Upstream] | None = None,
    cache: Any = None,
    metrics: GatewayMetrics | None = None,
) -> web.Application:
    """The application. `upstreams` replaces the adapters of the named tiers (tests inject stubbed AWS clients);
    `cache` replaces the one `config.cache` describes."""
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_errors])
    app[STATE] = GatewayState(config, metrics or GatewayMetrics(), cache, upstreams or {})
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop_accepting)
    app.on_cleanup.append(_clean_up)
    return app


def _build_upstream(tier: Tier, session: aiohttp.ClientSession) -> Upstream:
    if tier.kind == "openai":
        return OpenAIUpstream(tier, session)
    if tier.kind == "bedrock":
        from neuroscale.gateway.upstreams.bedrock import BedrockUpstream

        return BedrockUpstream(tier)
    from neuroscale.gateway.upstreams.sagemaker import SageMakerUpstream

    return SageMakerUpstream(tier)


async def _start(app: web.Application) -> None:
    state = app[STATE]
    state.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60))
    upstreams = [
        state.given_upstreams.get(tier.name) or _build_upstream(tier, state.session) for tier in state.config.tiers
    ]
    state.cascade = Cascade(state.config, upstreams, state.metrics)
    if state.cache is None and state.config.cache is not None:
        from neuroscale.cache import CacheSettings, build_cache

        state.cache = build_cache(CacheSettings.from_mapping(state.config.cache), metrics=state.metrics)
    state.ready = True


async def _stop_accepting(app: web.Application) -> None:
    app[STATE].ready = False


async def _clean_up(app: web.Application) -> None:
    state = app[STATE]
    if state.cascade is not None:
        for upstream in state.cascade.upstreams:
            await upstream.close()
    if state.cache is not None:
        await state.cache.close()
    if state.session is not None:
        await state.session.close()


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every failure becomes an OpenAI-style error body; nothing escapes as a bare 500 page."""
    try:
        return await handler(request)
    except OpenAIError as error:
        return _error_response(request, error)
    except UpstreamError as error:
        return _error_response(request, _upstream_error(error))
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[STATE].config.max_body_bytes
        message = f"The request body is larger than the {limit} bytes this gateway accepts."
        return _error_response(request, OpenAIError(413, message, code="request_too_large"))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _error_response(request, OpenAIError(error.status, error.reason, code=error.reason.lower().replace(" ", "_")))
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return _error_response(request, OpenAIError(500, "The gateway failed unexpectedly.", type="server_error"))


def _upstream_error(error: UpstreamError) -> OpenAIError:
    if error.kind == "rejected" and error.body and isinstance(error.body.get("error"), dict):
        detail = error.body["error"]
        return OpenAIError(
            error.status or 400, str(detail.get("message", error.message)), type=str(detail.get("type", "invalid_request_error")),
            param=detail.get("param"), code=detail.get("code"),
        )
    if error.kind == "rejected":
        return OpenAIError(error.status or 400, error.message)
    status = 504 if error.kind == "timeout" else 502
    return OpenAIError(status, error.message, type="upstream_error", code=error.kind)


def _error_response(request: web.Request, error: OpenAIError) -> web.Response:
    _count(request, error.status)
    return web.json_response(error.body(), status=error.status)


def _count(request: web.Request, status: int) -> None:
    endpoint = request.get(ENDPOINT)
    if endpoint is not None:
        request.app[STATE].metrics.requests.labels(endpoint, request.get(SERVED_BY, "none"), str(status)).inc()


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "chat")


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "completions")


async def _serve(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    state = request.app[STATE]
    assert state.cascade is not None
    started = time.perf_counter()
    request[ENDPOINT] = endpoint
    parsed = parse_request(endpoint, await request.read())
    config = state.config
    tier_hint = request.headers.get(config.escalation.tier_header)
    max_tier_hint = request.headers.get(config.escalation.max_tier_header)
    plan = plan_tiers(
        config, parsed.body["model"], estimate_prompt_tokens(endpoint, parsed.body), tier_hint, max_tier_hint
    )
    state.cascade.check_supported(parsed, plan)

    cache, scope, cache_status = state.cache, "", "off"
    if cache is not None and cache.cacheable(endpoint, parsed.body):
        tenant = request.headers.get(config.tenant_header) if config.tenant_header else None
        scope = cache_scope(request.headers.get("Authorization"), tenant, (tier_hint, max_tier_hint))
        hit = await cache.lookup(endpoint, parsed.body, scope)
        if hit is not None:
            request[SERVED_BY] = "cache"
            headers = {TIER_HEADER: "cache", CACHE_HEADER: hit.kind}
            if parsed.stream:
                return await _replay(request, parsed, hit.response, headers, started)
            _observe(request, started, first_byte=True, done=True)
            _count(request, 200)
            return web.json_response(hit.response, headers=headers)
        cache_status = "miss"
    else:
        cache = None

    if parsed.stream:
        served_stream = await state.cascade.open_stream(parsed, plan)
        return await _relay(request, parsed, served_stream, cache, scope, cache_status, started)
    served = await state.cascade.complete(parsed, plan)
    request[SERVED_BY] = served.tier
    if cache is not None:
        await cache.store(endpoint, parsed.body, scope, served.response)
    _observe(request, started, first_byte=True, done=True)
    _count(request, 200)
    return web.json_response(served.response, headers=_headers(served.tier, cache_status, served.escalations))


def _headers(tier: str, cache_status: str, escalations: list[tuple[str, Reason]]) -> dict[str, str]:
    headers = {TIER_HEADER: tier, CACHE_HEADER: cache_status}
    if escalations:
        headers[ESCALATIONS_HEADER] = ",".join(f"{name}:{reason.value}" for name, reason in escalations)
    return headers


def _observe(request: web.Request, started: float, *, first_byte: bool = False, done: bool = False) -> None:
    metrics = request.app[STATE].metrics
    labels = (request[ENDPOINT], request.get(SERVED_BY, "none"))
    elapsed = time.perf_counter() - started
    if first_byte:
        metrics.time_to_first_token.labels(*labels).observe(elapsed)
    if done:
        metrics.duration.labels(*labels).observe(elapsed)


def _sse_response(headers: dict[str, str]) -> web.StreamResponse:
    return web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers})


async def _replay(
    request: web.Request, parsed: ParsedRequest, cached: dict[str, Any], headers: dict[str, str], started: float
) -> web.StreamResponse:
    response = _sse_response(headers)
    try:
        await response.prepare(request)
        _observe(request, started, first_byte=True)
        for chunk in replay_chunks(parsed.endpoint, cached, parsed.include_usage):
            await response.write(encode_event(chunk))
        await response.write(DONE)
    except ConnectionError:
        request.app[STATE].metrics.client_disconnects.inc()
        return response
    _observe(request, started, done=True)
    _count(request, 200)
    return response


async def _relay(
    request: web.Request,
    parsed: ParsedRequest,
    served: ServedStream,
    cache: Any,
    scope: str,
    cache_status: str,
    started: float,
) -> web.StreamResponse:
    """Pass the committed stream through chunk by chunk; cache it only if it ended cleanly and the client got it all."""
    state = request.app[STATE]
    request[SERVED_BY] = served.tier
    response = _sse_response(_headers(served.tier, cache_status, served.escalations))
    first = True
    try:
        await response.prepare(request)
        async for chunk in served.chunks:
            await response.write(encode_event(chunk))
            if first:
                _observe(request, started, first_byte=True)
                first = False
        await response.write(DONE)
    except UpstreamError as error:
        log.warning("stream from tier %s failed after it was committed: %s", served.tier, error.message)
        _count(request, 502)
        try:
            await response.write(encode_event(_upstream_error(error).body()))
        except ConnectionError:
            state.metrics.client_disconnects.inc()
        return response
    except ConnectionError:
        state.metrics.client_disconnects.inc()
        _count(request, 499)
        return response
    finally:
        await served.chunks.aclose()
    _observe(request, started, done=True)
    _count(request, 200)
    if cache is not None and served.complete:
        await cache.store(parsed.endpoint, parsed.body, scope, served.assembler.response())
    return response


async def _models(request: web.Request) -> web.Response:
    config = request.app[STATE].config
    names = [config.model_name, *(tier.name for tier in config.tiers)]
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "neuroscale"} for name in names]
    return web.json_response({"object": "list", "data": data})


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    ready = request.app[STATE].ready
    return web.json_response({"status": "ready" if ready else "not ready"}, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
