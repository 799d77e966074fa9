"""The cascade: try the planned tiers in order, apply the escalation rules, and hand back one tier's answer or stream.

See `escalation.py` for the rules and for how streaming answers are judged (a bounded inspection window on the
tiers below the last one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from neuroscale.gateway.adapters import usage_adapter
from neuroscale.gateway.config import GatewayConfig
from neuroscale.gateway.escalation import AnswerJudge, Reason, TierPlan, view_of_response
from neuroscale.gateway.metrics import GatewayMetrics
from neuroscale.gateway.protocol import Endpoint, ParsedRequest, answer_problem, invalid
from neuroscale.gateway.streaming import StreamAssembler, strip_hidden
from neuroscale.gateway.upstreams.base import Upstream, UpstreamError
from neuroscale.gateway.warmup import Warmup

log = logging.getLogger(__name__)


@dataclass
class Served:
    tier: str
    response: dict[str, Any]
    escalations: list[tuple[str, Reason]]
    # (tier, usage) of every tier that answered, escalated-from ones included: what the request cost.
    usages: list[tuple[str, Any]] = field(default_factory=list)


@dataclass
class ServedStream:
    """A committed stream: `chunks` yields what the client should get; `complete` turns True once it ended cleanly."""

    tier: str
    escalations: list[tuple[str, Reason]]
    assembler: StreamAssembler
    chunks: AsyncGenerator[dict[str, Any], None] = field(repr=False)
    complete: bool = False


def checked(tier: str, endpoint: Endpoint, answer: Any, *, chunk: bool) -> dict[str, Any]:
    """The answer or chunk as is when the gateway can read it safely; an upstream failure otherwise."""
    problem = answer_problem(endpoint, answer, chunk=chunk)
    if problem is not None:
        raise UpstreamError("error", f"tier {tier} sent a malformed {'stream chunk' if chunk else 'answer'}: {problem}")
    return answer  # type: ignore[no-any-return]


class TierHealth:
    """What each tier did last, observed passively from real requests (no probes): reported by /readyz."""

    def __init__(self, names: Sequence[str], clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tiers: dict[str, dict[str, Any]] = {name: {"state": "unknown", "consecutive_failures": 0} for name in names}

    def answered(self, tier: str) -> None:
        self._tiers[tier] = {"state": "answering", "consecutive_failures": 0, "since": self._clock()}

    def failed(self, tier: str, kind: str) -> None:
        previous = self._tiers.get(tier, {})
        failures = int(previous.get("consecutive_failures", 0)) + 1
        since = previous.get("since") if previous.get("state") == "failing" else self._clock()
        self._tiers[tier] = {"state": "failing", "consecutive_failures": failures, "last_failure": kind, "since": since}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: dict(entry) for name, entry in self._tiers.items()}


class Cascade:
    def __init__(self, config: GatewayConfig, upstreams: Sequence[Upstream], metrics: GatewayMetrics) -> None:
        self.config = config
        self.upstreams = upstreams
        self.metrics = metrics
        self.judge = AnswerJudge.from_policy(config.escalation)
        self.health = TierHealth([upstream.name for upstream in upstreams])
        self.warmup = Warmup(config.tiers, metrics.registry)

    def check_supported(self, request: ParsedRequest, plan: TierPlan) -> None:
        """Reject up front a parameter some planned tier cannot honour, rather than failing half-way up."""
        for index in plan.tiers:
            upstream = self.upstreams[index]
            param = upstream.unsupported_parameter(request.endpoint, request.body)
            if param is not None:
                raise invalid(
                    f"The parameter '{param}' is not supported by tier '{upstream.name}' of this cascade.",
                    param=param,
                    code="unsupported_parameter",
                )

    def _skipped(self, plan: TierPlan) -> list[tuple[str, Reason]]:
        return [self._escalate(skip.tier, skip.reason) for skip in plan.skipped]

    def _escalate(self, index: int, reason: Reason) -> tuple[str, Reason]:
        name = self.upstreams[index].name
        self.metrics.escalations.labels(name, reason.value).inc()
        return name, reason

    def _tier_body(self, request: ParsedRequest, judged: bool) -> dict[str, Any]:
        body = dict(request.body)
        if judged and self.judge.wants_logprobs and not request.client_wants_logprobs:
            body["logprobs"] = True if request.endpoint == "chat" else 1
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _failure(self, index: int, error: UpstreamError, is_last: bool) -> tuple[str, Reason]:
        """Count and log a failed tier; re-raise when the request cannot move on."""
        error.tier = error.tier or self.upstreams[index].name
        self.metrics.upstream_errors.labels(error.tier, error.kind).inc()
        if error.kind != "rejected":
            self.health.failed(error.tier, error.kind)
        log.info("tier %s failed (%s): %s", error.tier, error.kind, error.message)
        if is_last or error.kind == "rejected" or not self.config.escalation.on_upstream_error:
            raise error
        return self._escalate(index, Reason.TIMEOUT if error.kind == "timeout" else Reason.UPSTREAM_ERROR)

    async def complete(self, request: ParsedRequest, plan: TierPlan) -> Served:
        escalations = self._skipped(plan)
        usages: list[tuple[str, Any]] = []
        for position, index in enumerate(plan.tiers):
            upstream, tier = self.upstreams[index], self.config.tiers[index]
            is_last = position == len(plan.tiers) - 1
            if not await self.warmup.admit(index, can_bridge=not is_last):
                escalations.append(self._escalate(index, Reason.COLD))
                continue
            judged = not is_last and self.judge.active
            try:
                async with asyncio.timeout(tier.timeouts.total_seconds):
                    response = await upstream.complete(request.endpoint, self._tier_body(request, judged))
                response = checked(upstream.name, request.endpoint, response, chunk=False)
                response["model"] = request.body["model"]
            except TimeoutError:
                escalations.append(self._failure(index, UpstreamError("timeout", f"tier {upstream.name} timed out"), is_last))
                continue
            except UpstreamError as error:
                escalations.append(self._failure(index, error, is_last))
                continue
            self.health.answered(upstream.name)
            self.metrics.count_usage(upstream.name, response.get("usage"),
                                     usage_adapter(self.config, upstream.name, request.body["model"]))
            usages.append((upstream.name, response.get("usage")))
            reason = self.judge.judge(view_of_response(request.endpoint, response)) if judged else None
            if reason is not None:
                escalations.append(self._escalate(index, reason))
                continue
            if not request.client_wants_logprobs:
                for choice in response.get("choices") or ():
                    if isinstance(choice, dict) and choice.get("logprobs") is not None:
                        choice["logprobs"] = None
            return Served(upstream.name, response, escalations, usages)
        raise AssertionError("a plan always has at least one tier")

    async def open_stream(self, request: ParsedRequest, plan: TierPlan) -> ServedStream:
        """Start streaming from the first tier whose opening passes the rules; nothing has reached the client yet."""
        escalations = self._skipped(plan)
        for position, index in enumerate(plan.tiers):
            upstream, tier = self.upstreams[index], self.config.tiers[index]
            is_last = position == len(plan.tiers) - 1
            if not await self.warmup.admit(index, can_bridge=not is_last):
                escalations.append(self._escalate(index, Reason.COLD))
                continue
            judged = not is_last and self.judge.active and self.judge.inspect_chunks > 0
            window = self.judge.inspect_chunks if judged else 1
            chunks = upstream.stream(request.endpoint, self._tier_body(request, judged))
            assembler = StreamAssembler(request.endpoint)
            held: list[dict[str, Any]] = []
            ended = False
            try:
                async with asyncio.timeout(tier.timeouts.first_token_seconds):
                    while len(held) < window:
                        chunk = await anext(chunks, None)
                        if chunk is None:
                            ended = True
                            break
                        chunk = checked(upstream.name, request.endpoint, chunk, chunk=True)
                        chunk["model"] = request.body["model"]
                        assembler.add(chunk)
                        held.append(chunk)
            except TimeoutError:
                await chunks.aclose()
                timeout = UpstreamError("timeout", f"tier {upstream.name} sent no first token in time")
                escalations.append(self._failure(index, timeout, is_last))
                continue
            except UpstreamError as error:
                await chunks.aclose()
                escalations.append(self._failure(index, error, is_last))
                continue
            self.health.answered(upstream.name)
            reason = self.judge.judge(assembler.view(complete=ended)) if judged else None
            if reason is not None:
                await chunks.aclose()
                escalations.append(self._escalate(index, reason))
                continue
            served = ServedStream(upstream.name, escalations, assembler, chunks)
            served.chunks = self._relay(served, request, held, chunks, ended)
            return served
        raise AssertionError("a plan always has at least one tier")

    async def _relay(
        self,
        served: ServedStream,
        request: ParsedRequest,
        held: list[dict[str, Any]],
        chunks: AsyncGenerator[dict[str, Any], None],
        ended: bool,
    ) -> AsyncGenerator[dict[str, Any], None]:
        keep_logprobs, keep_usage = request.client_wants_logprobs, request.include_usage
        try:
            for chunk in held:
                visible = strip_hidden(chunk, keep_logprobs, keep_usage)
                if visible is not None:
                    yield visible
            if not ended:
                async for chunk in chunks:
                    chunk = checked(served.tier, request.endpoint, chunk, chunk=True)
                    chunk["model"] = request.body["model"]
                    served.assembler.add(chunk)
                    visible = strip_hidden(chunk, keep_logprobs, keep_usage)
                    if visible is not None:
                        yield visible
            served.complete = True
            self.metrics.count_usage(served.tier, served.assembler.usage,
                                     usage_adapter(self.config, served.tier, request.body["model"]))
        except UpstreamError as error:
            error.tier = error.tier or served.tier
            self.metrics.upstream_errors.labels(served.tier, error.kind).inc()
            self.health.failed(served.tier, error.kind)
            raise
        finally:
            await chunks.aclose()
