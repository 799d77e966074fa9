"""Request-trace readers: turn a trace file into a generated-tokens/s demand series on a fixed time step.

Every format is one `TraceFormat` in `FORMATS`: a header test and a reader. To add a format, write a reader that
returns a `DemandTrace` and register it; `load_trace(path, "auto")` then recognises it by its header.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_DECODE_TOKENS_PER_S", "FORMATS", "SYNTHETIC_SHAPES", "DemandTrace", "TraceError", "TraceFormat",
           "load_trace", "synthetic_trace"]

# One sequence decodes at ~25 tok/s (40 ms between tokens), between the per-sequence speeds NEURON.md implies for
# Llama-3.1-8B on inf2 (320 tok/s / batch 8 = 40, 510 / batch 32 = 16). A request's tokens are asked for at that
# speed from its arrival, not all in the second it arrives.
DEFAULT_DECODE_TOKENS_PER_S = 25.0
_FINE_STEP_S = 0.1


class TraceError(ValueError):
    """The trace file cannot be read; the message names the file, the line and what to fix."""


@dataclass(frozen=True)
class DemandTrace:
    """Generated tokens/s asked for during each ``step_s`` starting at time 0, plus workload facts."""

    name: str
    format: str
    step_s: float
    tokens_per_s: np.ndarray
    tokens_per_request: float
    requests: int | None
    scale: float = 1.0

    @property
    def duration_s(self) -> float:
        return len(self.tokens_per_s) * self.step_s

    def scaled(self, factor: float) -> DemandTrace:
        """The same trace with every token rate multiplied by ``factor`` (as if ``factor`` copies overlapped)."""
        if not (math.isfinite(factor) and factor > 0):
            raise TraceError(f"scale must be a positive number, got {factor}")
        return DemandTrace(self.name, self.format, self.step_s, self.tokens_per_s * factor,
                           self.tokens_per_request, self.requests, self.scale * factor)

    def peak(self, window_s: float) -> float:
        """Highest mean demand over any aligned window of ``window_s`` (the trace README quotes 60 s)."""
        per = max(1, int(round(window_s / self.step_s)))
        usable = len(self.tokens_per_s) // per * per
        if usable == 0:
            return float(self.tokens_per_s.mean())
        return float(self.tokens_per_s[:usable].reshape(-1, per).mean(axis=1).max())


@dataclass(frozen=True)
class TraceFormat:
    name: str
    description: str
    matches_header: Callable[[Sequence[str]], bool]
    read: Callable[[Path, list[list[str]], float], DemandTrace]


def _parse_azure_time(text: str) -> datetime:
    # Azure writes 7 fractional digits; datetime takes at most 6.
    stamp = text.strip()
    if "." in stamp:
        whole, fraction = stamp.split(".", 1)
        stamp = f"{whole}.{fraction[:6]}"
    return datetime.fromisoformat(stamp)


def _read_azure(path: Path, rows: list[list[str]], decode_tokens_per_s: float) -> DemandTrace:
    header = [h.strip() for h in rows[0]]
    t_col, g_col = header.index("TIMESTAMP"), header.index("GeneratedTokens")
    arrivals: list[float] = []
    generated: list[float] = []
    first: datetime | None = None
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            at = _parse_azure_time(row[t_col])
            tokens = float(row[g_col])
        except (IndexError, ValueError) as exc:
            raise TraceError(f"{path}:{line_no}: expected TIMESTAMP,ContextTokens,GeneratedTokens, got {row!r} "
                             f"({exc})") from None
        if tokens < 0:
            raise TraceError(f"{path}:{line_no}: GeneratedTokens must be >= 0, got {tokens:g}")
        first = at if first is None else first
        arrivals.append((at - first).total_seconds())
        generated.append(tokens)
    if not arrivals:
        raise TraceError(f"{path}: no requests after the header")
    return _from_requests(path.name, "azure", np.asarray(arrivals), np.asarray(generated), decode_tokens_per_s)


def _from_requests(name: str, fmt: str, arrivals: np.ndarray, generated: np.ndarray,
                   decode_tokens_per_s: float) -> DemandTrace:
    start = arrivals.astype(float)
    tokens = generated.astype(float)
    if np.any(np.diff(start) < 0):
        order = np.argsort(start, kind="stable")
        start, tokens = start[order], tokens[order]
    start -= start.min()
    duration = tokens / decode_tokens_per_s
    span_s = max(1.0, math.ceil(float(start.max())))
    # A request is served at decode speed from its arrival; what runs past the last arrival is cut off so the
    # series covers the span the trace was recorded over.
    fine = np.zeros(int(round(span_s / _FINE_STEP_S)) + 1)
    first_bin = np.minimum((start / _FINE_STEP_S).astype(int), len(fine) - 1)
    last_bin = np.minimum(((start + duration) / _FINE_STEP_S).round().astype(int), len(fine) - 1)
    last_bin = np.maximum(last_bin, first_bin + 1)
    rate = np.where(tokens > 0, tokens / ((last_bin - first_bin) * _FINE_STEP_S), 0.0)
    np.add.at(fine, first_bin, rate)
    np.add.at(fine, np.minimum(last_bin, len(fine) - 1), -rate)
    per_fine = np.cumsum(fine)[:-1]
    per_second = per_fine.reshape(-1, int(round(1 / _FINE_STEP_S))).mean(axis=1)
    # Requests that started before the recording are missing from its first seconds, so demand ramps up from
    # zero for as long as the longest request lasts; that ramp is an artefact and is cut off.
    warm_up = min(int(math.ceil(float(duration.max()))), len(per_second) // 10)
    return DemandTrace(name, fmt, 1.0, np.clip(per_second[warm_up:], 0, None), float(tokens.mean()), len(tokens))


def _read_aggregate(path: Path, rows: list[list[str]], _decode: float) -> DemandTrace:
    header = [h.strip() for h in rows[0]]
    cols = {name: header.index(name) for name in ("window_start_s", "window_s", "req_per_s", "exp_gen_tok_per_s")}
    starts, widths, requests, tokens = [], [], [], []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            values = {name: float(row[i]) for name, i in cols.items()}
        except (IndexError, ValueError) as exc:
            raise TraceError(f"{path}:{line_no}: expected numbers in {', '.join(cols)}, got {row!r} ({exc})") from None
        if values["window_s"] <= 0 or values["exp_gen_tok_per_s"] < 0 or values["req_per_s"] < 0:
            raise TraceError(f"{path}:{line_no}: window_s must be > 0 and rates >= 0, got {row!r}")
        starts.append(values["window_start_s"])
        widths.append(values["window_s"])
        requests.append(values["req_per_s"])
        tokens.append(values["exp_gen_tok_per_s"])
    if not starts:
        raise TraceError(f"{path}: no windows after the header")
    start = np.asarray(starts) - min(starts)
    width = np.asarray(widths)
    rate = np.asarray(tokens)
    seconds = np.arange(0.5, float((start + width).max()), 1.0)
    # Each value is a window's mean; fleet demand does not jump at window edges, so the series runs linearly
    # between window midpoints (and flat before the first and after the last).
    per_second = np.interp(seconds, start + width / 2, rate)
    total_requests = float(np.sum(np.asarray(requests) * width))
    per_request = float(np.sum(rate * width)) / total_requests if total_requests > 0 else 0.0
    return DemandTrace(path.name, "aggregate", 1.0, per_second, per_request, int(round(total_requests)))


FORMATS: dict[str, TraceFormat] = {
    "azure": TraceFormat(
        "azure", "Azure LLM inference trace: TIMESTAMP,ContextTokens,GeneratedTokens, one row per request",
        lambda header: {"TIMESTAMP", "GeneratedTokens"} <= set(header), _read_azure),
    "aggregate": TraceFormat(
        "aggregate", "windowed demand: window_start_s,window_s,req_per_s,...,exp_gen_tok_per_s,...",
        lambda header: {"window_start_s", "window_s", "req_per_s", "exp_gen_tok_per_s"} <= set(header),
        _read_aggregate),
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
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TraceError(f"{path} is not a UTF-8 text CSV file") from None
    if not rows:
        raise TraceError(f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    if fmt == "auto":
        found = [f for f in FORMATS.values() if f.matches_header(header)]
        if not found:
            known = "; ".join(f"{f.name} ({f.description})" for f in FORMATS.values())
            raise TraceError(f"{path}: header {','.join(header)!r} matches no known trace format: {known}")
        trace_format = found[0]
    else:
        trace_format = FORMATS[fmt]
        if not trace_format.matches_header(header):
            raise TraceError(f"{path}: header {','.join(header)!r} is not a {fmt} trace ({trace_format.description})")
    trace = trace_format.read(path, rows, decode_tokens_per_s)
    return trace if scale == 1.0 else trace.scaled(scale)


def _shape(name: str, t: np.ndarray, duration_s: float) -> np.ndarray:
    """Relative request rate (1 = the base rate) of each synthetic shape at times ``t``."""
    phase = t / duration_s
    if name == "diurnal":
        return 1.0 + 0.6 * np.sin(2 * np.pi * (phase - 0.25))
    if name == "ramp":
        return 1.0 + np.clip((phase - 0.25) / 0.35, 0.0, 1.0) * 1.5
    if name == "burst":
        bursts = ((phase > 0.2) & (phase < 0.25)) | ((phase > 0.55) & (phase < 0.58)) | ((phase > 0.8) & (phase < 0.9))
        return 1.0 + 0.9 * bursts
    if name == "step":
        return np.where((phase > 0.3) & (phase < 0.65), 1.8, 1.0)
    raise TraceError(f"unknown synthetic shape {name!r}; choose one of: {', '.join(SYNTHETIC_SHAPES)}")


SYNTHETIC_SHAPES = {"diurnal": 6 * 3600.0, "ramp": 3600.0, "burst": 3600.0, "step": 3600.0}


def synthetic_trace(shape: str, seed: int, *, base_requests_per_s: float = 4.0, median_tokens: float = 180.0,
                    length_sigma: float = 0.9, decode_tokens_per_s: float = DEFAULT_DECODE_TOKENS_PER_S,
                    duration_s: float | None = None) -> DemandTrace:
    """A request-level trace for developing the policy away from the shared files.

    Arrivals are a Poisson process whose rate follows ``shape`` (diurnal: a sine over the span; ramp: flat,
    a linear rise to 2.5×, flat; burst: three bursts of 1.9× lasting 1.8–6 minutes; step: 1.8× for the middle
    third); generated lengths are lognormal (median ``median_tokens``, log-σ ``length_sigma``). Demand is
    built from the requests exactly as the Azure reader builds it.
    """
    span = SYNTHETIC_SHAPES.get(shape) if duration_s is None else duration_s
    if span is None:
        raise TraceError(f"unknown synthetic shape {shape!r}; choose one of: {', '.join(SYNTHETIC_SHAPES)}")
    rng = np.random.default_rng(seed)
    peak = base_requests_per_s * float(_shape(shape, np.linspace(0, span, 4001), span).max())
    # Thinning: draw at the peak rate, keep each arrival with probability rate(t) / peak.
    candidates = np.cumsum(rng.exponential(1.0 / peak, int(peak * span * 1.2) + 100))
    candidates = candidates[candidates < span]
    kept = candidates[rng.random(len(candidates)) < base_requests_per_s * _shape(shape, candidates, span) / peak]
    lengths = np.maximum(1.0, np.round(rng.lognormal(math.log(median_tokens), length_sigma, len(kept))))
    return _from_requests(f"synthetic-{shape}-{seed}", "synthetic", kept, lengths, decode_tokens_per_s)
