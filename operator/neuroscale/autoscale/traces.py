"""Request-trace readers: turn a trace file into generated and prompt tokens/s and request arrivals on a fixed step.

Every format is one `TraceFormat` in `FORMATS`: a header test and a reader. To add a format, write a reader that
returns a `DemandTrace` and register it; `load_trace(path, "auto")` then recognises it by its header. A reader gets
the rows as they are read (the header first), never the whole file at once.

Inputs are bounded before they cost memory: a file over MAX_TRACE_BYTES is refused from its size, a line over
MAX_LINE_CHARS is refused, and a trace spanning more than MAX_SPAN_S is refused before its series is built (the
series has a value per second, ten per second while requests are spread).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

__all__ = ["DEFAULT_DECODE_TOKENS_PER_S", "FORMATS", "MAX_SPAN_S", "MAX_TRACE_BYTES", "SYNTHETIC_SHAPES", "DemandTrace",
           "TraceError", "TraceFormat", "load_trace", "synthetic_trace"]

# One sequence decodes at ~25 tok/s (40 ms between tokens), between the per-sequence speeds NEURON.md implies for
# Llama-3.1-8B on inf2 (320 tok/s / batch 8 = 40, 510 / batch 32 = 16). A request's tokens are asked for at that
# speed from its arrival, not all in the second it arrives.
DEFAULT_DECODE_TOKENS_PER_S = 25.0
_FINE_STEP_S = 0.1

# The shared traces are 0.7 MB (an hour of Azure requests) and 7 KB (a day of ServeGen windows). 64 MiB holds about
# 1.8 million Azure rows, a week at 3 requests/s; reading keeps ~16 bytes a request, plus the series below.
MAX_TRACE_BYTES = 64 * 1024 * 1024
MAX_LINE_CHARS = 64 * 1024  # a trace row is under 100 characters; csv's own field limit is 128 KiB
# A week: the longest public LLM traces (Azure 2024) cover one. Time and memory grow with the span: the simulator
# steps every scaler through each second (~8 s a simulated day here), and the Azure reader spreads requests on a
# 0.1 s grid (80 bytes a second of span). A week is ~1 minute and a few hundred MB at most.
MAX_SPAN_S = 7 * 24 * 3600.0


class TraceError(ValueError):
    """The trace file cannot be read; the message names the file, the line and what to fix."""


@dataclass(frozen=True)
class DemandTrace:
    """Per ``step_s`` from time 0: generated tokens/s asked for, prompt tokens/s arriving, requests/s arriving.

    Generated tokens are asked for at one sequence's decode speed from the request's arrival (spread over the
    seconds it streams); a prompt's tokens all arrive with the request (prefill runs at once).
    """

    name: str
    format: str
    step_s: float
    tokens_per_s: np.ndarray
    tokens_per_request: float
    requests: int | None
    scale: float = 1.0
    prompt_tokens_per_s: np.ndarray | None = None
    requests_per_s: np.ndarray | None = None

    def __post_init__(self) -> None:
        # A trace without prompt counts asks for none; one without arrivals spreads its requests like its tokens.
        if self.prompt_tokens_per_s is None:
            object.__setattr__(self, "prompt_tokens_per_s", np.zeros_like(self.tokens_per_s, dtype=float))
        if self.requests_per_s is None:
            per = self.tokens_per_request if self.tokens_per_request > 0 else 1.0
            object.__setattr__(self, "requests_per_s", np.asarray(self.tokens_per_s, dtype=float) / per)

    @property
    def duration_s(self) -> float:
        return len(self.tokens_per_s) * self.step_s

    @property
    def prompt_per_request(self) -> float:
        arrived = float(self.requests_per_s.sum())  # type: ignore[union-attr]
        return float(self.prompt_tokens_per_s.sum()) / arrived if arrived > 0 else 0.0  # type: ignore[union-attr]

    def work_per_request(self, prefill_cost: float) -> float:
        """Generated-token equivalents one request asks for: its generated tokens + its prompt at prefill cost."""
        return self.tokens_per_request + prefill_cost * self.prompt_per_request

    def scaled(self, factor: float) -> DemandTrace:
        """The same trace with every rate multiplied by ``factor`` (as if ``factor`` copies overlapped)."""
        if not (math.isfinite(factor) and factor > 0):
            raise TraceError(f"scale must be a positive number, got {factor}")
        return DemandTrace(self.name, self.format, self.step_s, self.tokens_per_s * factor,
                           self.tokens_per_request, self.requests, self.scale * factor,
                           self.prompt_tokens_per_s * factor, self.requests_per_s * factor)  # type: ignore[operator]

    def peak(self, window_s: float, prefill_cost: float = 0.0) -> float:
        """Highest mean demand (generated + ``prefill_cost`` × prompt tokens/s) over any aligned ``window_s``."""
        demand = self.tokens_per_s + prefill_cost * self.prompt_tokens_per_s  # type: ignore[operator]
        per = max(1, int(round(window_s / self.step_s)))
        usable = len(demand) // per * per
        if usable == 0:
            return float(demand.mean())
        return float(demand[:usable].reshape(-1, per).mean(axis=1).max())


@dataclass(frozen=True)
class TraceFormat:
    name: str
    description: str
    matches_header: Callable[[Sequence[str]], bool]
    # rows: the header, then each row as read (CSV: lists of fields; JSON lines: the objects, the first's keys the
    # header)
    read: Callable[[Path, Iterable[Any], float], DemandTrace]
    json_lines: bool = False


def _show(value: object) -> str:
    """A row or header for an error message, cut short: a hostile row may be 64 KiB."""
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _check_span(path: Path, span_s: float, what: str) -> None:
    """Refuse a trace longer than MAX_SPAN_S before its per-second series is allocated."""
    if not span_s <= MAX_SPAN_S:
        raise TraceError(f"{path}: {what} span {span_s / 86400:,.1f} days; simulate replays at most "
                         f"{MAX_SPAN_S / 86400:g} days of trace: cut it into pieces")


def _parse_azure_time(text: str) -> datetime:
    # Azure writes 7 fractional digits; older Pythons take at most 6. Cut the digits only, keeping a time zone.
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text.strip()))


def _read_azure(path: Path, rows: Iterable[list[str]], decode_tokens_per_s: float) -> DemandTrace:
    rows = iter(rows)
    header = [h.strip() for h in next(rows)]
    t_col, g_col = header.index("TIMESTAMP"), header.index("GeneratedTokens")
    c_col = header.index("ContextTokens") if "ContextTokens" in header else None
    arrivals = array("d")
    generated = array("d")
    prompt = array("d")
    first: datetime | None = None
    first_line = 0
    earliest = latest = (0.0, 0)  # (seconds after the first row, line)
    for line_no, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            at = _parse_azure_time(row[t_col])
            tokens = float(row[g_col])
            context = 0.0 if c_col is None else float(row[c_col])
        except (IndexError, ValueError) as exc:
            raise TraceError(f"{path}:{line_no}: expected TIMESTAMP,ContextTokens,GeneratedTokens, got {_show(row)} "
                             f"({exc})") from None
        if not (math.isfinite(tokens) and tokens >= 0):
            raise TraceError(f"{path}:{line_no}: GeneratedTokens must be a finite number >= 0, got {row[g_col]!r}")
        if not (math.isfinite(context) and context >= 0):
            raise TraceError(f"{path}:{line_no}: ContextTokens must be a finite number >= 0, "
                             f"got {row[c_col]!r}")  # type: ignore[index]
        if first is None:
            first, first_line = at, line_no
        elif (at.tzinfo is None) != (first.tzinfo is None):
            raise TraceError(f"{path}:{line_no}: TIMESTAMP {row[t_col].strip()!r} has "
                             f"{'no time zone' if at.tzinfo is None else 'a time zone'} but line {first_line}'s "
                             f"{'has one' if at.tzinfo is None else 'has none'}; give every row a time zone or none")
        offset = (at - first).total_seconds()
        earliest = (offset, line_no) if not arrivals or offset < earliest[0] else earliest
        latest = (offset, line_no) if not arrivals or offset > latest[0] else latest
        arrivals.append(offset)
        generated.append(tokens)
        prompt.append(context)
    if not arrivals:
        raise TraceError(f"{path}: no requests after the header")
    _check_span(path, latest[0] - earliest[0], f"the requests from line {earliest[1]} to line {latest[1]}")
    return _from_requests(path.name, "azure", np.asarray(arrivals), np.asarray(generated), decode_tokens_per_s,
                          str(path), np.asarray(prompt))


def _from_requests(name: str, fmt: str, arrivals: np.ndarray, generated: np.ndarray,
                   decode_tokens_per_s: float, source: str | None = None,
                   prompt: np.ndarray | None = None) -> DemandTrace:
    start = arrivals.astype(float)
    tokens = generated.astype(float)
    context = np.zeros_like(tokens) if prompt is None else prompt.astype(float)
    if np.any(np.diff(start) < 0):
        order = np.argsort(start, kind="stable")
        start, tokens, context = start[order], tokens[order], context[order]
    start -= start.min()
    # Finite inputs can still add up past a float (1e300 tokens a request): numpy's warnings would be extra lines on
    # stderr, so they are silenced and the result is checked instead.
    with np.errstate(over="ignore", invalid="ignore"):
        duration = tokens / decode_tokens_per_s
        span_s = max(1.0, math.ceil(float(start.max())))
        # A request is served at decode speed from its arrival, its rate set by its whole length; the tokens a
        # request still streams after the last arrival fall past the series' end and are dropped there (clipping
        # the request first would squeeze them into the last seconds).
        fine = np.zeros(int(round(span_s / _FINE_STEP_S)) + 1)
        first_bin = np.minimum((start / _FINE_STEP_S).astype(int), len(fine) - 1)
        end = np.minimum(start + duration, 2 * span_s + 1)  # past the series either way; keeps the int in range
        last_bin = np.maximum((end / _FINE_STEP_S).round().astype(int), first_bin + 1)
        rate = np.where(tokens > 0, tokens / ((last_bin - first_bin) * _FINE_STEP_S), 0.0)
        np.add.at(fine, first_bin, rate)
        np.add.at(fine, np.minimum(last_bin, len(fine) - 1), -rate)
        per_fine = np.cumsum(fine)[:-1]
        per_second = per_fine.reshape(-1, int(round(1 / _FINE_STEP_S))).mean(axis=1)
        second = np.minimum(start.astype(int), len(per_second) - 1)
        prompt_per_second = np.bincount(second, weights=context, minlength=len(per_second))
        arrivals_per_second = np.bincount(second, minlength=len(per_second)).astype(float)
        tokens_per_request = float(tokens.mean())
    if not (np.isfinite(per_second).all() and np.isfinite(prompt_per_second).all()
            and math.isfinite(tokens_per_request)):
        raise TraceError(f"{source or name}: the token counts are too large to add up (the demand overflows a float)")
    # Requests that started before the recording are missing from its first seconds, so demand ramps up from
    # zero for as long as the longest request lasts; that ramp is an artefact and is cut off.
    warm_up = min(int(math.ceil(min(float(duration.max()), len(per_second)))), len(per_second) // 10)
    return DemandTrace(name, fmt, 1.0, np.clip(per_second[warm_up:], 0, None), tokens_per_request, len(tokens),
                       prompt_tokens_per_s=prompt_per_second[warm_up:], requests_per_s=arrivals_per_second[warm_up:])


def _read_aggregate(path: Path, rows: Iterable[list[str]], _decode: float) -> DemandTrace:
    rows = iter(rows)
    header = [h.strip() for h in next(rows)]
    cols = {name: header.index(name) for name in ("window_start_s", "window_s", "req_per_s", "exp_gen_tok_per_s")}
    prompt_col = header.index("exp_input_tok_per_s") if "exp_input_tok_per_s" in header else None
    starts, widths, requests, tokens, prompts = array("d"), array("d"), array("d"), array("d"), array("d")
    lines = array("q")
    for line_no, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            values = {name: float(row[i]) for name, i in cols.items()}
            values["exp_input_tok_per_s"] = 0.0 if prompt_col is None else float(row[prompt_col])
        except (IndexError, ValueError) as exc:
            raise TraceError(f"{path}:{line_no}: expected numbers in {', '.join(cols)}, got {_show(row)} "
                             f"({exc})") from None
        if not all(math.isfinite(v) for v in values.values()):
            raise TraceError(f"{path}:{line_no}: expected finite numbers in {', '.join(cols)}, got {_show(row)}")
        if (values["window_s"] <= 0 or values["exp_gen_tok_per_s"] < 0 or values["req_per_s"] < 0
                or values["exp_input_tok_per_s"] < 0):
            raise TraceError(f"{path}:{line_no}: window_s must be > 0 and rates >= 0, got {_show(row)}")
        starts.append(values["window_start_s"])
        widths.append(values["window_s"])
        requests.append(values["req_per_s"])
        tokens.append(values["exp_gen_tok_per_s"])
        prompts.append(values["exp_input_tok_per_s"])
        lines.append(line_no)
    if not starts:
        raise TraceError(f"{path}: no windows after the header")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below, as in _from_requests
        start = np.asarray(starts) - min(starts)
        width = np.asarray(widths)
        rate = np.asarray(tokens)
        ends = start + width
        _check_span(path, float(ends.max()), f"the windows from the start of line {lines[int(np.argmin(start))]} "
                                             f"to the end of line {lines[int(np.argmax(ends))]}")
        seconds = np.arange(0.5, float(ends.max()), 1.0)
        # Each value is a window's mean; fleet demand does not jump at window edges, so the series runs linearly
        # between window midpoints (and flat before the first and after the last).
        per_second = np.interp(seconds, start + width / 2, rate)
        prompt_per_second = np.interp(seconds, start + width / 2, np.asarray(prompts))
        requests_per_second = np.interp(seconds, start + width / 2, np.asarray(requests))
        total_requests = float(np.sum(np.asarray(requests) * width))
        per_request = float(np.sum(rate * width)) / total_requests if total_requests > 0 else 0.0
    if not (np.isfinite(per_second).all() and np.isfinite(prompt_per_second).all() and math.isfinite(total_requests)
            and math.isfinite(per_request)):
        raise TraceError(f"{path}: the rates are too large to add up (the demand overflows a float)")
    return DemandTrace(path.name, "aggregate", 1.0, per_second, per_request, int(round(total_requests)),
                       prompt_tokens_per_s=prompt_per_second, requests_per_s=requests_per_second)


def _read_mooncake(path: Path, rows: Iterable[Any], decode_tokens_per_s: float) -> DemandTrace:
    rows = iter(rows)
    next(rows)  # the header: the first object's keys
    arrivals, generated, prompt = array("d"), array("d"), array("d")
    for line_no, row in enumerate(rows, start=1):
        try:
            at, out, ctx = (float(row[key]) for key in ("timestamp", "output_length", "input_length"))
        except (KeyError, TypeError, ValueError) as exc:
            raise TraceError(f"{path}:{line_no}: expected an object with numbers timestamp (ms), input_length and "
                             f"output_length, got {_show(row)} ({exc})") from None
        if not all(math.isfinite(v) and v >= 0 for v in (at, out, ctx)):
            raise TraceError(f"{path}:{line_no}: timestamp, input_length and output_length must be finite and >= 0")
        arrivals.append(at / 1000)
        generated.append(out)
        prompt.append(ctx)
    if not arrivals:
        raise TraceError(f"{path}: no requests")
    _check_span(path, max(arrivals) - min(arrivals), "the requests")
    return _from_requests(path.name, "mooncake", np.asarray(arrivals), np.asarray(generated), decode_tokens_per_s,
                          str(path), np.asarray(prompt))


FORMATS: dict[str, TraceFormat] = {
    "azure": TraceFormat(
        "azure", "Azure LLM inference trace: TIMESTAMP,ContextTokens,GeneratedTokens, one row per request",
        lambda header: {"TIMESTAMP", "GeneratedTokens"} <= set(header), _read_azure),
    "aggregate": TraceFormat(
        "aggregate", "windowed demand: window_start_s,window_s,req_per_s,...,exp_gen_tok_per_s,...",
        lambda header: {"window_start_s", "window_s", "req_per_s", "exp_gen_tok_per_s"} <= set(header),
        _read_aggregate),
    "mooncake": TraceFormat(
        "mooncake", 'Mooncake JSON lines: {"timestamp": ms, "input_length": n, "output_length": n, ...} a request',
        lambda header: {"timestamp", "input_length", "output_length"} <= set(header), _read_mooncake, json_lines=True),
}


def load_trace(path: str | Path, fmt: str = "auto", *, scale: float = 1.0,
               decode_tokens_per_s: float = DEFAULT_DECODE_TOKENS_PER_S) -> DemandTrace:
    """Read ``path`` as ``fmt`` (or detect it from the header) and return its demand, times ``scale``."""
    path = Path(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise TraceError(f"unknown trace format {fmt!r}; choose auto or one of: {', '.join(FORMATS)}")
    if not (math.isfinite(decode_tokens_per_s) and decode_tokens_per_s > 0):
        raise TraceError(f"decode speed must be a positive number of tokens/s, got {decode_tokens_per_s}")
    try:
        size = path.stat().st_size
        if size > MAX_TRACE_BYTES:  # refused from its size, before a byte is read
            raise _too_big(path, f"is {size / 2**20:,.0f} MiB, more than")
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    with handle:
        json_lines = handle.read(1) == "{"
        handle.seek(0)
        rows = _json_rows(path, handle) if json_lines else _rows(path, handle)
        first = next(rows, None)
        if first is None:
            raise TraceError(f"{path} is empty")
        header = list(first) if json_lines else [h.strip() for h in first]
        shown = _show(",".join(header))
        if fmt == "auto":
            found = [f for f in FORMATS.values() if f.json_lines == json_lines and f.matches_header(header)]
            if not found:
                known = "; ".join(f"{f.name} ({f.description})" for f in FORMATS.values())
                raise TraceError(f"{path}: header {shown} matches no known trace format: {known}")
            trace_format = found[0]
        else:
            trace_format = FORMATS[fmt]
            if trace_format.json_lines != json_lines or not trace_format.matches_header(header):
                raise TraceError(f"{path}: header {shown} is not a {fmt} trace ({trace_format.description})")
        trace = trace_format.read(path, itertools.chain([first], rows), decode_tokens_per_s)
    return trace if scale == 1.0 else trace.scaled(scale)


def _too_big(path: Path, what: str) -> TraceError:
    return TraceError(f"{path} {what} the {MAX_TRACE_BYTES // 2**20} MiB simulate reads from a trace file: cut it "
                      "into pieces")


def _lines(path: Path, handle: TextIO) -> Iterator[str]:
    """The lines of ``handle``, each and all of them within the bounds simulate reads."""
    read = 0
    for line_no in itertools.count(1):
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        read += len(line)
        if read > MAX_TRACE_BYTES:  # a device or a growing file: its size said nothing
            raise _too_big(path, "holds more than")
        if len(line) > MAX_LINE_CHARS:
            raise TraceError(f"{path}:{line_no}: line longer than {MAX_LINE_CHARS} characters; not a trace CSV or "
                             "JSON-lines file")
        yield line


def _rows(path: Path, handle: TextIO) -> Iterator[list[str]]:
    """The CSV rows of ``handle`` as they are read; every way reading can fail is a TraceError naming the line."""
    reader = csv.reader(_lines(path, handle))
    try:
        yield from reader
    except csv.Error as exc:
        raise TraceError(f"{path}:{reader.line_num}: not a CSV row ({exc})") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path} is not a UTF-8 text CSV file") from None
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None


def _json_rows(path: Path, handle: TextIO) -> Iterator[Any]:
    """The objects of a JSON-lines file: the first one twice (its keys are the header), blank lines skipped."""
    first = True
    try:
        for line_no, line in enumerate(_lines(path, handle), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise TraceError(f"{path}:{line_no}: not a JSON object ({exc})") from None
            if not isinstance(row, dict):
                raise TraceError(f"{path}:{line_no}: not a JSON object: {_show(line)}")
            if first:
                yield row
                first = False
            yield row
    except UnicodeDecodeError:
        raise TraceError(f"{path} is not a UTF-8 text file") from None
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None


def _step(factor: float) -> Callable[[np.ndarray, float], np.ndarray]:
    return lambda t, span: np.where((t >= 0.4 * span) & (t < 0.75 * span), factor, 1.0)


def _ramp(t: np.ndarray, span: float) -> np.ndarray:
    # Flat, up to 4x over 20 minutes, flat, back down over 20 minutes, flat.
    up = np.clip((t - 0.15 * span) / (span / 6), 0.0, 1.0)
    down = np.clip((t - 0.6 * span) / (span / 6), 0.0, 1.0)
    return 1.0 + 3.0 * (up - down)


def _diurnal(t: np.ndarray, span: float) -> np.ndarray:
    # One day: the busiest hour asks for three times the quietest.
    return 1.0 + 0.5 * np.sin(2 * np.pi * (t / span - 0.25))


# name: (span in seconds, relative request rate at times t)
SYNTHETIC_SHAPES: dict[str, tuple[float, Callable[[np.ndarray, float], np.ndarray] | None]] = {
    "step2": (3600.0, _step(2.0)),
    "step5": (3600.0, _step(5.0)),
    "step10": (3600.0, _step(10.0)),
    "ramp": (3600.0, _ramp),
    "diurnal": (86400.0, _diurnal),
    "mmpp": (7200.0, None),  # bursty on/off: drawn per seed in `_mmpp_rate`
}
_MMPP_ON_RATE, _MMPP_MEAN_OFF_S, _MMPP_MEAN_ON_S = 4.0, 900.0, 180.0


def _mmpp_rate(rng: np.random.Generator, span: float) -> Callable[[np.ndarray], np.ndarray]:
    """A two-state Markov-modulated rate: 1 while off, 4 while on; off and on last 15 and 3 minutes on average."""
    edges, on, at = [0.0], [False], 0.0
    while at < span:
        at += rng.exponential(_MMPP_MEAN_ON_S if on[-1] else _MMPP_MEAN_OFF_S)
        edges.append(at)
        on.append(not on[-1])
    levels = np.where(np.asarray(on), _MMPP_ON_RATE, 1.0)
    return lambda t: levels[np.searchsorted(np.asarray(edges), t, side="right") - 1]


def synthetic_trace(shape: str, seed: int, *, base_requests_per_s: float = 2.0, median_tokens: float = 180.0,
                    length_sigma: float = 0.9, median_prompt_tokens: float = 1000.0, prompt_sigma: float = 1.0,
                    decode_tokens_per_s: float = DEFAULT_DECODE_TOKENS_PER_S,
                    duration_s: float | None = None) -> DemandTrace:
    """A request-level trace of one of the families in SYNTHETIC_SHAPES, for judging scalers away from the real files.

    Arrivals are a Poisson process whose rate follows ``shape`` (stepN: N× for 35 % of the hour from 40 % in;
    ramp: up to 4× over 20 minutes and back; diurnal: a day-long sine, busiest 3× quietest; mmpp: on/off bursts of
    4× lasting 3 minutes on average every 15). Generated and prompt lengths are lognormal (medians
    ``median_tokens`` and ``median_prompt_tokens``). Demand is built from the requests as the Azure reader builds it.
    """
    if shape not in SYNTHETIC_SHAPES:
        raise TraceError(f"unknown synthetic shape {shape!r}; choose one of: {', '.join(SYNTHETIC_SHAPES)}")
    default_span, relative = SYNTHETIC_SHAPES[shape]
    span = default_span if duration_s is None else duration_s
    rng = np.random.default_rng(seed)
    rate = (lambda t: relative(t, span)) if relative is not None else _mmpp_rate(rng, span)
    peak = base_requests_per_s * float(np.max(rate(np.linspace(0, span, 20001))))
    # Thinning: draw at the peak rate, keep each arrival with probability rate(t) / peak.
    candidates = np.cumsum(rng.exponential(1.0 / peak, int(peak * span * 1.2) + 100))
    candidates = candidates[candidates < span]
    kept = candidates[rng.random(len(candidates)) < base_requests_per_s * rate(candidates) / peak]
    lengths = np.maximum(1.0, np.round(rng.lognormal(math.log(median_tokens), length_sigma, len(kept))))
    prompts = np.maximum(1.0, np.round(rng.lognormal(math.log(median_prompt_tokens), prompt_sigma, len(kept))))
    return _from_requests(f"synthetic-{shape}-{seed}", "synthetic", kept, lengths, decode_tokens_per_s,
                          prompt=prompts)
