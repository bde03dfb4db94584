"""One measured request: send it, time it, and count speculation three ways.

Around each request we read ``/metrics`` (counter deltas belong to this request
because the server has one slot and requests are sequential) and the slice of
the server log written during it (``LLAMA_TRACE=1`` logs one
"accepted a/b draft tokens" line per verification step). The response's own
``timings`` is the third tally; ``crosscheck`` says whether all three agree.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .engine.server import LlamaServer
from .errors import RequestError

STEP_RE = re.compile(r"accepted\s+(\d+)/\s*(\d+) draft tokens(?!,)( \(restore checkpoint\))?")
SUMMARY_RE = re.compile(r"draft acceptance = [\d.]+ \(\s*(\d+) accepted /\s*(\d+) generated\)")
REQUEST_END_RE = re.compile(r"stop processing: n_tokens")


@dataclass
class LogTally:
    """Per-step speculation as the server logged it for one request."""

    steps: list[tuple[int, int]] = field(default_factory=list)  # (accepted, drafted) per verification step
    summary_accepted: int | None = None
    summary_drafted: int | None = None
    complete: bool = False  # saw the end-of-request line

    @property
    def drafted(self) -> int:
        return sum(d for _, d in self.steps)

    @property
    def accepted(self) -> int:
        return sum(a for a, _ in self.steps)

    def drafted_per_pos(self) -> list[int]:
        depth = max((d for _, d in self.steps), default=0)
        return [sum(1 for _, d in self.steps if d > i) for i in range(depth)]

    def accepted_per_pos(self) -> list[int]:
        depth = max((d for _, d in self.steps), default=0)
        return [sum(1 for a, _ in self.steps if a > i) for i in range(depth)]


def parse_log_slice(text: str) -> LogTally:
    tally = LogTally()
    replay_pending = False
    for line in text.splitlines():
        step = STEP_RE.search(line)
        if step:
            if replay_pending:
                # After a checkpoint restore the server re-verifies the accepted prefix;
                # that replay is not a new step (the counters skip it too).
                replay_pending = False
                continue
            tally.steps.append((int(step.group(1)), int(step.group(2))))
            replay_pending = step.group(3) is not None
            continue
        summary = SUMMARY_RE.search(line)
        if summary:
            tally.summary_accepted, tally.summary_drafted = int(summary.group(1)), int(summary.group(2))
        elif REQUEST_END_RE.search(line):
            tally.complete = True
    return tally


def read_log_from(path: Path, offset: int) -> str:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read().decode("utf-8", "replace")


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@dataclass
class Outcome:
    """What one request produced; the sweep turns it into a RequestRecord."""

    wall_ms: float
    response: dict
    metrics_delta: dict[str, float]
    accepted_per_pos: list[int]
    log: LogTally
    tokens: list[tuple[int, object]] | None = None  # the generated text tokenized again: (id, piece)

    @property
    def timings(self) -> dict:
        return self.response.get("timings") or {}

    def crosscheck(self) -> str:
        """"ok" when timings, /metrics and the log agree exactly; otherwise what differs."""
        t = self.timings
        problems = []
        tallies = {
            "drafted": (t.get("draft_n", 0), self.metrics_delta.get("spec_decode_num_draft_tokens_total", 0),
                        self.log.drafted if self.log.complete else None),
            "accepted": (t.get("draft_n_accepted", 0),
                         self.metrics_delta.get("spec_decode_num_accepted_tokens_total", 0),
                         self.log.accepted if self.log.complete else None),
        }
        for name, (timing, metric, logged) in tallies.items():
            values = [int(timing), int(metric)] + ([int(logged)] if logged is not None else [])
            if len(set(values)) > 1:
                problems.append(f"{name}: timings={timing} metrics={int(metric)} log={logged}")
        steps = int(self.metrics_delta.get("spec_decode_num_drafts_total", 0))
        if self.log.complete and steps != len(self.log.steps):
            problems.append(f"steps: metrics={steps} log={len(self.log.steps)}")
        if self.log.complete and self.log.summary_drafted is not None and (
                self.log.summary_drafted != t.get("draft_n") or self.log.summary_accepted != t.get("draft_n_accepted")):
            problems.append(f"server summary {self.log.summary_accepted}/{self.log.summary_drafted}")
        if self.log.complete and self.accepted_per_pos and self.log.accepted_per_pos():
            logged = self.log.accepted_per_pos()
            width = max(len(logged), len(self.accepted_per_pos))
            pad = lambda xs: list(xs) + [0] * (width - len(xs))  # noqa: E731
            if pad(logged) != pad(self.accepted_per_pos):
                problems.append(f"per-position: metrics={self.accepted_per_pos} log={logged}")
        if not self.log.complete:
            problems.append("server log slice incomplete")
        return "ok" if not problems else "; ".join(problems)


def generated_text(response: dict) -> str | None:
    """Everything the model generated: reasoning (when the server split it off) and content."""
    message = ((response.get("choices") or [{}])[0]).get("message") or {}
    parts = [message.get(k) for k in ("reasoning_content", "content") if isinstance(message.get(k), str)]
    return "".join(parts) if parts else None


def tokenize(server: LlamaServer, text: str, timeout: float = 30.0) -> list[tuple[int, object]] | None:
    """(id, piece) of ``text`` by the server's own tokenizer (``/tokenize``); a piece that is not
    valid UTF-8 comes back as a list of byte values. None when the server cannot answer: the
    degeneration measure is then "not measured", and the timed request stands."""
    body = {"content": text, "add_special": False, "parse_special": False, "with_pieces": True}
    try:
        response = server.client.post("/tokenize", json=body, timeout=timeout)
        tokens = response.json().get("tokens") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(tokens, list) or not all(isinstance(t, dict) and "id" in t for t in tokens):
        return None
    return [(int(t["id"]), t.get("piece")) for t in tokens]


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def chat_body(messages, max_tokens: int, temperature: float, seed: int, thinking: bool) -> dict:
    return {
        "messages": list(messages),
        "max_tokens": max_tokens,
        "temperature": temperature,
        "seed": seed,
        "cache_prompt": False,  # every request pays its own prompt: comparable timings
        "stream": False,
        "chat_template_kwargs": {"enable_thinking": thinking},
    }


def measure_request(server: LlamaServer, body: dict, timeout: float, log_wait: float = 5.0) -> Outcome:
    """Send one chat completion and collect all three tallies; RequestError on any failure."""
    try:
        before, pos_before = server.metrics()
    except httpx.HTTPError as exc:
        server.check_alive("before the request")
        raise RequestError(f"cannot read /metrics: {exc}") from None
    offset = log_size(server.log_path)
    started = time.perf_counter()
    try:
        response = server.client.post("/v1/chat/completions", json=body, timeout=timeout)
    except httpx.TimeoutException:
        raise RequestError(f"request timed out after {timeout:.0f} s") from None
    except httpx.HTTPError as exc:
        server.check_alive("during the request")
        raise RequestError(f"request failed: {exc}") from None
    wall_ms = (time.perf_counter() - started) * 1000.0
    if response.status_code != 200:
        server.check_alive("during the request")
        raise RequestError(f"HTTP {response.status_code}: {response.text[:200]}")
    try:
        payload = response.json()
        after, pos_after = server.metrics()
    except (ValueError, httpx.HTTPError) as exc:
        server.check_alive("after the request")
        raise RequestError(f"bad response or metrics: {exc}") from None
    # The log is written by a background thread: wait briefly for this request's last line.
    deadline = time.monotonic() + log_wait
    while True:
        tally = parse_log_slice(read_log_from(server.log_path, offset))
        if tally.complete or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    positions = sorted(set(pos_after) | set(pos_before))
    per_pos = [int(pos_after.get(p, 0) - pos_before.get(p, 0)) for p in positions]
    while per_pos and per_pos[-1] == 0:
        per_pos.pop()
    text = generated_text(payload)  # tokenized after the timed part: it costs the request nothing
    return Outcome(wall_ms=wall_ms, response=payload, metrics_delta=_delta(after, before),
                   accepted_per_pos=per_pos, log=tally, tokens=tokenize(server, text) if text is not None else None)
