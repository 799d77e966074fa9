"""Bounded, linear stream decoding: lines and events past their bound fail as soon as the bound is passed (not when
the line ends), a long line fed in many small pieces is handled without re-scanning what came before, and SSE
events still decode when split at any byte (see test_gateway_protocol for the property test)."""

from __future__ import annotations

import pytest

from neuroscale.gateway import sagemaker_translation as sagemaker
from neuroscale.gateway.streaming import LineSplitter, SSEDecoder, StreamTooLarge
from neuroscale.gateway.upstreams.base import UpstreamError


class CountingBytes(bytes):
    """bytes that count how many bytes `find` was asked to scan, to show the splitter never rescans."""

    scanned = 0

    def find(self, sub, start=0, *args):  # type: ignore[override]
        CountingBytes.scanned += len(self) - start
        return super().find(sub, start, *args)


def test_line_splitter_scans_each_byte_once() -> None:
    splitter = LineSplitter(max_line=1 << 24)
    CountingBytes.scanned = 0
    pieces = [CountingBytes(b"x" * 1024) for _ in range(4096)] + [CountingBytes(b"\nrest")]
    lines = [line for piece in pieces for line in splitter.feed(piece)]
    assert lines == [b"x" * (4 << 20)]
    assert splitter.rest() == b"rest"
    assert CountingBytes.scanned <= 2 * (4096 * 1024 + 5)  # linear: a rescanning splitter would scan ~8 GiB


def test_line_longer_than_the_bound_fails_before_it_ends() -> None:
    splitter = LineSplitter(max_line=1000)
    assert splitter.feed(b"a" * 600) == []
    with pytest.raises(StreamTooLarge):
        splitter.feed(b"a" * 600)  # no newline yet: the bound is passed all the same


def test_sse_decoder_bounds_events_and_lines() -> None:
    decoder = SSEDecoder(max_event_bytes=100)
    assert decoder.feed(b"data: " + b"a" * 50 + b"\n\n") == ["a" * 50]
    with pytest.raises(StreamTooLarge):
        decoder.feed(b"data: " + b"b" * 200)
    many_lines = SSEDecoder(max_event_bytes=100)
    with pytest.raises(StreamTooLarge):
        many_lines.feed(b"data: " + b"c" * 60 + b"\ndata: " + b"c" * 60 + b"\n")


def test_sse_decoder_flushes_an_unterminated_last_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: one\n\ndata: tw") == ["one"]
    assert decoder.flush() == ["tw"]


def test_sagemaker_stream_lines_are_bounded() -> None:
    decoder = sagemaker.StreamDecoder("chat", "inputs", "ep", "id", 1, max_line_bytes=100)
    with pytest.raises(UpstreamError):
        decoder.feed(b'{"token": {"text": "' + b"x" * 200)
