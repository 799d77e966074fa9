"""The gateway's aiohttp application: OpenAI-compatible routes in front of the cascade, the cache, and metrics.

Responses carry `x-neuroscale-tier` (the tier that served the answer, or `cache`), `x-neuroscale-cache`
(`exact`, `semantic`, `miss` or `off`) and, when the request moved up, `x-neuroscale-escalations`
(`tier:reason` pairs in order). Cache isolation is described in `scope.py`; who the caller is in `auth.py`, their
limits in `quotas.py`, what they cost in `chargeback.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from neuroscale.gateway.adapters import adapter_names, adapter_plan
from neuroscale.gateway.auth import Authenticator, Tenant, bearer_key
from neuroscale.gateway.cascade import Cascade, ServedStream
from neuroscale.gateway.chargeback import Chargeback
from neuroscale.gateway.config import GatewayConfig, Limits, Tier
from neuroscale.gateway.escalation import Reason, estimate_prompt_tokens, plan_tiers
from neuroscale.gateway.metrics import GatewayMetrics
from neuroscale.gateway.protocol import Endpoint, OpenAIError, ParsedRequest, parse_request
from neuroscale.gateway.quotas import Quotas
from neuroscale.gateway.scope import cache_scope
from neuroscale.gateway.streaming import DONE, encode_event, replay_chunks
from neuroscale.gateway.upstreams.base import Upstream, UpstreamError
from neuroscale.gateway.upstreams.openai import OpenAIUpstream
from neuroscale.gateway.upstreams.routed import REQUEST_HEADERS, RoutedOpenAIUpstream

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
        self.chargeback = Chargeback(config, metrics.registry)
        self.auth = Authenticator(config.auth, metrics.registry, self.chargeback.initialise)
        self.quotas = Quotas(config.quotas, metrics.registry) if config.quotas is not None else None
        self.key_watch: asyncio.Task[None] | None = None
        # Cache writes run after the answer went out; tracked so shutdown lets them finish.
        self.stores: set[asyncio.Task[None]] = set()

    def store_soon(self, cache: Any, endpoint: Endpoint, body: dict[str, Any], scope: str, response: dict[str, Any]) -> None:
        """Write an answer to the cache off the response path: a slow or hung cache never delays an answer. Past
        MAX_PENDING_STORES writes in flight (a cache that stopped answering), further answers are not cached."""
        if len(self.stores) >= MAX_PENDING_STORES:
            log.debug("cache writes backed up (%d in flight); answer not cached", len(self.stores))
            return
        task = asyncio.create_task(cache.store(endpoint, body, scope, response))
        self.stores.add(task)
        task.add_done_callback(self.stores.discard)

    async def drain_stores(self, timeout: float) -> None:
        if self.stores:
            _, late = await asyncio.wait(set(self.stores), timeout=timeout)
            for task in late:
                task.cancel()


MAX_PENDING_STORES = 256
STORE_DRAIN_SECONDS = 5.0


STATE = web.AppKey("neuroscale_gateway", GatewayState)
ENDPOINT = web.RequestKey("neuroscale_endpoint", str)
SERVED_BY = web.RequestKey("neuroscale_tier", str)
TENANT = web.RequestKey("neuroscale_tenant", Tenant)
RATE_LIMIT_HEADERS = web.RequestKey("neuroscale_rate_limit_headers", dict)
# The SSE response once it has been prepared: from then on a failure is an error event, never a new response.
STREAM = web.RequestKey("neuroscale_stream", web.StreamResponse)


def build_app(
    config: GatewayConfig,
    *,
    upstreams: Mapping[str, Upstream] | None = None,
    cache: Any = None,
    metrics: GatewayMetrics | None = None,
) -> web.Application:
    """The application. `upstreams` replaces the adapters of the named tiers (tests inject stubbed AWS clients);
    `cache` replaces the one `config.cache` describes."""
    # aiohttp closes a connection whose next request head is not complete when its keep-alive timer fires (the timer
    # runs from the connection's start and from the end of each answer), which makes that timer the header timeout.
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[_errors],
        handler_args={
            "keepalive_timeout": config.limits.client_header_timeout_seconds,
            # How long the unread rest of a refused body is drained so the client can read its answer (a 413, a
            # 408) before the connection closes: no longer than the body timeout itself.
            "lingering_time": min(10.0, config.limits.client_body_timeout_seconds),
        },
    )
    app[STATE] = GatewayState(config, metrics or GatewayMetrics(), cache, upstreams or {})
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_post("/v1/completions", _completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model}", _model)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.on_startup.append(_start)
    app.on_response_prepare.append(_add_rate_limit_headers)
    app.on_shutdown.append(_stop_accepting)
    app.on_cleanup.append(_clean_up)
    return app


def _build_upstream(tier: Tier, session: aiohttp.ClientSession, limits: Limits) -> Upstream:
    if tier.kind == "openai":
        if tier.routing is not None:
            return RoutedOpenAIUpstream(tier, session, limits)
        return OpenAIUpstream(tier, session, limits)
    if tier.kind == "bedrock":
        from neuroscale.gateway.upstreams.bedrock import BedrockUpstream

        return BedrockUpstream(tier)
    from neuroscale.gateway.upstreams.sagemaker import SageMakerUpstream

    return SageMakerUpstream(tier, limits=limits)


async def _start(app: web.Application) -> None:
    state = app[STATE]
    state.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60))
    upstreams = [
        state.given_upstreams.get(tier.name) or _build_upstream(tier, state.session, state.config.limits)
        for tier in state.config.tiers
    ]
    state.cascade = Cascade(state.config, upstreams, state.metrics)
    state.cascade.warmup.start(state.session)
    state.key_watch = state.auth.start()
    state.chargeback.initialise(state.auth.known_tenants)
    if state.cache is None and state.config.cache is not None:
        from neuroscale.cache import CacheSettings, build_cache

        state.cache = build_cache(CacheSettings.from_mapping(state.config.cache), metrics=state.metrics)
    state.ready = True


async def _stop_accepting(app: web.Application) -> None:
    app[STATE].ready = False


async def _clean_up(app: web.Application) -> None:
    state = app[STATE]
    await state.drain_stores(STORE_DRAIN_SECONDS)
    if state.key_watch is not None:
        state.key_watch.cancel()
    if state.quotas is not None:
        await state.quotas.close(STORE_DRAIN_SECONDS)
    if state.cascade is not None:
        await state.cascade.warmup.stop()
        for upstream in state.cascade.upstreams:
            await upstream.close()
    if state.cache is not None:
        await state.cache.close()
    if state.session is not None:
        await state.session.close()


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """The one place failures become answers, and the one place requests are counted.

    Before a response has started, a failure becomes an OpenAI-style error body whose message is stable and safe to
    show (what went wrong, never upstream addresses or bodies); the details go to the log. After a stream has
    started (its status line and first bytes are out), a failure can no longer change the status: it becomes one
    SSE error event and the stream ends cleanly. A client that went away gets nothing and is logged quietly.
    """
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        raise
    except Exception as error:  # noqa: BLE001 - every failure must end as an answer, never as a bare 500 page
        stream = request.get(STREAM)
        if stream is not None:
            await _end_stream(request, stream, error)
            response = stream
        elif isinstance(error, ConnectionError):
            # Usually a client that dropped while uploading its request: nobody is left to answer, nothing is wrong.
            log.info("client went away during %s %s: %s", request.method, request.path, error)
            _count(request, CLIENT_CLOSED)
            response = web.json_response(
                OpenAIError(400, "The connection closed before the request was received.").body(), status=400
            )
            response.force_close()
            return response
        else:
            response = _error_response(request, error)
    _count(request, _status_sent(request, response))
    return response


# The status counted when the client left before any response was sent (nginx's convention; never sent on the wire).
CLIENT_CLOSED = 499


def _count(request: web.Request, status: int) -> None:
    """Count a chat/completions request once, by the HTTP status its client received."""
    endpoint = request.get(ENDPOINT)
    if endpoint is not None:
        request.app[STATE].metrics.requests.labels(endpoint, request.get(SERVED_BY, "none"), str(status)).inc()


def _status_sent(request: web.Request, response: web.StreamResponse) -> int:
    if not response.prepared and (request.transport is None or request.transport.is_closing()):
        return CLIENT_CLOSED
    return response.status


def _as_openai_error(request: web.Request, error: Exception) -> OpenAIError:
    if isinstance(error, OpenAIError):
        return error
    if isinstance(error, UpstreamError):
        log.warning("%s %s: the answer failed: %s", request.method, request.path, error.message)
        return _upstream_error(error)
    if isinstance(error, web.HTTPRequestEntityTooLarge):
        limit = request.app[STATE].config.max_body_bytes
        message = f"The request body is larger than the {limit} bytes this gateway accepts."
        return OpenAIError(413, message, code="request_too_large")
    if isinstance(error, web.HTTPException) and error.status >= 400:
        return OpenAIError(error.status, error.reason, code=error.reason.lower().replace(" ", "_"))
    log.exception("unexpected error serving %s %s", request.method, request.path, exc_info=error)
    return OpenAIError(500, "The gateway failed unexpectedly.", type="server_error")


def _error_response(request: web.Request, error: Exception) -> web.Response:
    if isinstance(error, web.HTTPException) and error.status < 400:
        raise error
    openai_error = _as_openai_error(request, error)
    response = web.json_response(openai_error.body(), status=openai_error.status, headers=openai_error.headers)
    if openai_error.status == 408:
        response.force_close()  # the rest of a slow body is not waited for
    return response


async def _end_stream(request: web.Request, stream: web.StreamResponse, error: Exception) -> None:
    """A failure after the stream started: one error event, then the stream ends (aiohttp writes the last chunk)."""
    metrics = request.app[STATE].metrics
    labels = (request.get(ENDPOINT, "none"), request.get(SERVED_BY, "none"))
    if isinstance(error, ConnectionError):
        log.info("client closed the stream of %s %s: %s", request.method, request.path, error)
        metrics.client_disconnects.inc()
        return
    openai_error = _as_openai_error(request, error)
    metrics.stream_errors.labels(*labels, error.kind if isinstance(error, UpstreamError) else "gateway").inc()
    try:
        await stream.write(encode_event(openai_error.body()))
    except ConnectionError:
        metrics.client_disconnects.inc()


def _upstream_error(error: UpstreamError) -> OpenAIError:
    """What the client learns about a failed tier: the tier, the kind of failure, and for a request the tier
    refused (a 4xx the client caused) the upstream's own OpenAI-style explanation; never raw bodies or addresses."""
    if error.kind == "rejected":
        detail = error.body.get("error") if isinstance(error.body, dict) else None
        if isinstance(detail, dict) and isinstance(detail.get("message"), str):
            return OpenAIError(
                error.status or 400, detail["message"][:_MAX_PASSED_MESSAGE],
                param=_short_string(detail.get("param")), code=_short_string(detail.get("code")),
            )
        return OpenAIError(error.status or 400, f"{_who(error)} rejected the request.", code="rejected_by_upstream")
    if error.kind == "timeout":
        return OpenAIError(504, f"{_who(error)} did not answer in time.", type="upstream_error", code="timeout")
    if error.rate_limited:
        # Passed through as a 429 so clients back off (the OpenAI SDKs honour Retry-After) instead of retrying a 502.
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
        return OpenAIError(429, f"{_who(error)} is rate limited; retry later.", type="rate_limit_error",
                           code="rate_limit_exceeded", headers=headers)
    return OpenAIError(502, f"{_who(error)} failed to answer.", type="upstream_error", code="error")


def _who(error: UpstreamError) -> str:
    return f"Tier '{error.tier}'" if error.tier else "The upstream model"


# A tier's explanation of why it refused a request is passed on (the client must fix its request), bounded.
_MAX_PASSED_MESSAGE = 1000


def _short_string(value: Any) -> str | None:
    return value[:100] if isinstance(value, str) else None


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "chat")


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "completions")


async def _serve(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    state = request.app[STATE]
    assert state.cascade is not None
    started = time.perf_counter()
    request[ENDPOINT] = endpoint
    REQUEST_HEADERS.set(request.headers)
    tenant = await _admit(request)
    parsed = parse_request(endpoint, await _read_body(request))
    config = state.config
    tier_hint = request.headers.get(config.escalation.tier_header)
    max_tier_hint = request.headers.get(config.escalation.max_tier_header)
    prompt_tokens = estimate_prompt_tokens(endpoint, parsed.body)
    plan = adapter_plan(config, parsed.body["model"], prompt_tokens) or plan_tiers(
        config, parsed.body["model"], prompt_tokens, tier_hint, max_tier_hint
    )
    state.cascade.check_supported(parsed, plan)

    cache, scope, cache_status = state.cache, "", "off"
    if cache is not None and cache.cacheable(endpoint, parsed.body):
        unverified = _unverified_key(request) if config.auth.mode == "none" else None
        scope = cache_scope(tenant.name, unverified, (tier_hint, max_tier_hint))
        hit = await cache.lookup(endpoint, parsed.body, scope)
        if hit is not None:
            state.chargeback.cache_hit(tenant, hit.response.get("usage"))
            hit.response["model"] = parsed.body["model"]
            request[SERVED_BY] = "cache"
            headers = {TIER_HEADER: "cache", CACHE_HEADER: hit.kind}
            if parsed.stream:
                return await _replay(request, parsed, hit.response, headers, started)
            _observe(request, started, first_byte=True, done=True)
            return web.json_response(hit.response, headers=headers)
        cache_status = "miss"
    else:
        cache = None

    if parsed.stream:
        served_stream = await state.cascade.open_stream(parsed, plan)
        return await _relay(request, parsed, served_stream, cache, scope, cache_status, started)
    served = await state.cascade.complete(parsed, plan)
    request[SERVED_BY] = served.tier
    _charge(request, served.tier, served.usages, served.escalations)
    if cache is not None:
        state.store_soon(cache, endpoint, parsed.body, scope, served.response)
    _observe(request, started, first_byte=True, done=True)
    return web.json_response(served.response, headers=_headers(served.tier, cache_status, served.escalations))


async def _admit(request: web.Request) -> Tenant:
    """The authenticated tenant (401 otherwise), within its quotas (429 otherwise)."""
    state = request.app[STATE]
    tenant = state.auth.authenticate(request.headers, request.remote)
    request[TENANT] = tenant
    if state.quotas is not None:
        request[RATE_LIMIT_HEADERS] = await state.quotas.admit(tenant)
    return tenant


def _unverified_key(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization")
    return bearer_key(authorization) or (authorization or "").strip() or None


def _charge(request: web.Request, tier: str, usages: list[tuple[str, Any]], escalations: list[tuple[str, Reason]]) -> None:
    state = request.app[STATE]
    tokens = state.chargeback.served(request[TENANT], tier, usages, escalations)
    if state.quotas is not None:
        state.quotas.charge_soon(request[TENANT], tokens)


async def _add_rate_limit_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(request.get(RATE_LIMIT_HEADERS) or {})


async def _read_body(request: web.Request) -> bytes:
    limit = request.app[STATE].config.limits.client_body_timeout_seconds
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise OpenAIError(408, f"The request body did not arrive within {limit:g} seconds.", code="request_timeout") from None


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


async def _open_stream(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    """Send the status line and headers of an SSE answer; failures after this end the stream (see `_errors`)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **headers})
    await response.prepare(request)
    request[STREAM] = response
    return response


async def _replay(
    request: web.Request, parsed: ParsedRequest, cached: dict[str, Any], headers: dict[str, str], started: float
) -> web.StreamResponse:
    response = await _open_stream(request, headers)
    _observe(request, started, first_byte=True)
    for chunk in replay_chunks(parsed.endpoint, cached, parsed.include_usage):
        await response.write(encode_event(chunk))
    await response.write(DONE)
    _observe(request, started, done=True)
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
    request[SERVED_BY] = served.tier
    try:
        response = await _open_stream(request, _headers(served.tier, cache_status, served.escalations))
        first = True
        async for chunk in served.chunks:
            await response.write(encode_event(chunk))
            if first:
                _observe(request, started, first_byte=True)
                first = False
        await response.write(DONE)
    finally:
        await served.chunks.aclose()
    _charge(request, served.tier, [(served.tier, served.assembler.usage)], served.escalations)
    _observe(request, started, done=True)
    if cache is not None and served.complete:
        request.app[STATE].store_soon(cache, parsed.endpoint, parsed.body, scope, served.assembler.response())
    return response


def _model_names(config: GatewayConfig) -> list[str]:
    return [config.model_name, *(tier.name for tier in config.tiers), *adapter_names(config)]


def _model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "neuroscale"}


async def _models(request: web.Request) -> web.Response:
    request.app[STATE].auth.authenticate(request.headers, request.remote)
    data = [_model_object(name) for name in _model_names(request.app[STATE].config)]
    return web.json_response({"object": "list", "data": data})


async def _model(request: web.Request) -> web.Response:
    request.app[STATE].auth.authenticate(request.headers, request.remote)
    name = request.match_info["model"]
    names = _model_names(request.app[STATE].config)
    if name not in names:
        message = f"The model '{name}' does not exist; available: {', '.join(names)}."
        raise OpenAIError(404, message, param="model", code="model_not_found")
    return web.json_response(_model_object(name))


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    """Ready once started and until shutdown begins, whatever the tiers are doing.

    Readiness deliberately ignores the tiers: every replica shares them, so failing readiness when they fail would
    pull every replica out of the Service at once, turning a clear 502/504 per request into refused connections, and
    with no traffic left the passive observations below could never see the tiers recover. What the tiers did last
    is reported in the body for people and probes that want it.
    """
    state = request.app[STATE]
    tiers = state.cascade.health.snapshot() if state.cascade is not None else {}
    body = {"status": "ready" if state.ready else "not ready", "tiers": tiers}
    return web.json_response(body, status=200 if state.ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
