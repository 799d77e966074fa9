"""Integration fixtures shared by the gateway tests: two stub OpenAI-compatible tiers and an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.stub_upstream import StubUpstream


@pytest.fixture
async def small() -> AsyncIterator[StubUpstream]:
    async with StubUpstream("small", answer="Paris, small says.") as stub:
        yield stub


@pytest.fixture
async def large() -> AsyncIterator[StubUpstream]:
    async with StubUpstream("large", answer="Paris, large says.") as stub:
        yield stub


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
