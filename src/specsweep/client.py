"""One measured request: send it, time it, and count speculation.

Around each request we read ``/metrics`` (counter deltas belong to this request
because the server has one slot and requests are sequential; the scrape after one
request is the scrape before the next). On a traced server (``LLAMA_TRACE=1``) we
also read the slice of the server log written during it: one "accepted a/b draft
tokens" line per verification step. The response's own ``timings`` is the third
tally; ``crosscheck`` says whether the tallies there are agree. A request on a
server with several slots (``--parallel``) is pinned to one slot (``id_slot``):
its log lines are the ones of that slot, and ``/metrics`` is not read (its
counters mix the slots).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .engine.server import LlamaServer
from .errors import RequestError
from .overhead import NullStopwatch, Stopwatch

SLOT_RE = re.compile(r"\bid\s+(\d+) \| task")
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


def parse_log_slice(text: str, slot: int | None = None) -> LogTally:
    """The steps logged in ``text``; with ``slot``, only the lines of that server slot."""
    tally = LogTally()
    replay_pending = False
    for line in text.splitlines():
        if slot is not None:
            tagged = SLOT_RE.search(line)
            if tagged is None or int(tagged.group(1)) != slot:
                continue
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


Metrics = tuple[dict[str, float], dict[int, float]]  # one /metrics scrape, as parse_metrics gives it


@dataclass
class Outcome:
    """What one request produced; the sweep turns it into a RequestRecord."""

    wall_ms: float
    response: dict
    metrics_delta: dict[str, float]  # empty when /metrics was not read (several slots)
    accepted_per_pos: list[int]
    log: LogTally
    tokens: list[tuple[int, object]] | None = None  # the generated text tokenized again: (id, piece)
    traced: bool = True  # the server logged every step
    metrics_after: Metrics | None = None  # the scrape after the request: the next request's "before"
    # Draft positions /metrics has a counter for: the server's longest possible draft (n_max), so a
    # request whose drafts were all full length has draft_n == steps × n_max.
    n_max: int | None = None

    @property
    def metrics_read(self) -> bool:
        return self.metrics_after is not None

    def all_drafts_full(self) -> bool:
        """Every draft of this request had n_max tokens: then /metrics alone gives its exact
        per-position counts (drafted_i = steps at every position)."""
        if not self.metrics_read:
            return False
        drafted = self.metrics_delta.get("spec_decode_num_draft_tokens_total", 0)
        steps = self.metrics_delta.get("spec_decode_num_drafts_total", 0)
        if drafted == 0:
            return steps == 0
        return self.n_max is not None and drafted == steps * self.n_max

    @property
    def timings(self) -> dict:
        return self.response.get("timings") or {}

    def crosscheck(self) -> str:
        """"ok" when the tallies this request has (timings, /metrics, the trace log) agree exactly;
        otherwise what differs."""
        t = self.timings
        logged = self.log.complete
        problems = []
        tallies = {
            "drafted": (t.get("draft_n", 0), "spec_decode_num_draft_tokens_total", self.log.drafted),
            "accepted": (t.get("draft_n_accepted", 0), "spec_decode_num_accepted_tokens_total", self.log.accepted),
        }
        for name, (timing, metric, log_value) in tallies.items():
            metric_value = int(self.metrics_delta.get(metric, 0)) if self.metrics_read else None
            values = [v for v in (int(timing), metric_value, log_value if logged else None) if v is not None]
            if len(set(values)) > 1:
                problems.append(f"{name}: timings={timing} metrics={metric_value} log={log_value if logged else None}")
        if logged and self.metrics_read:
            steps = int(self.metrics_delta.get("spec_decode_num_drafts_total", 0))
            if steps != len(self.log.steps):
                problems.append(f"steps: metrics={steps} log={len(self.log.steps)}")
        if logged and self.log.summary_drafted is not None and (
                self.log.summary_drafted != t.get("draft_n") or self.log.summary_accepted != t.get("draft_n_accepted")):
            problems.append(f"server summary {self.log.summary_accepted}/{self.log.summary_drafted}")
        if logged and self.accepted_per_pos and self.log.accepted_per_pos():
            from_log = self.log.accepted_per_pos()
            width = max(len(from_log), len(self.accepted_per_pos))
            pad = lambda xs: list(xs) + [0] * (width - len(xs))  # noqa: E731
            if pad(from_log) != pad(self.accepted_per_pos):
                problems.append(f"per-position: metrics={self.accepted_per_pos} log={from_log}")
        if self.traced and not logged:
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


def _scrape(server: LlamaServer, when: str) -> Metrics:
    try:
        return server.metrics()
    except httpx.HTTPError as exc:
        server.check_alive(when)
        raise RequestError(f"cannot read /metrics {when}: {exc}") from None


def measure_request(server: LlamaServer, body: dict, timeout: float, log_wait: float = 5.0,
                    before: Metrics | None = None, slot: int | None = None,
                    clock: Stopwatch | None = None, read_metrics: bool | None = None,
                    retokenize: bool = True) -> Outcome:
    """Send one chat completion and collect its tallies; RequestError on any failure.

    ``before``: the /metrics scrape that ends the previous request on this server, when nothing
    ran in between (saves a scrape). ``slot``: pin the request to this slot of a server with
    several (its log lines are then told apart by slot). ``read_metrics``: scrape /metrics around
    the request; by default only on a server with one slot (the counters mix the slots of a server
    with several). ``clock`` times each phase (``specsweep.overhead``). ``retokenize``: tokenize the
    answer again here (else the caller does it, e.g. while the next request runs)."""
    clock = clock or NullStopwatch()
    skip_metrics = server.slots > 1 if read_metrics is None else not read_metrics
    if slot is not None:
        body = {**body, "id_slot": slot}
    if not skip_metrics and before is None:
        with clock.phase("metrics"):
            before = _scrape(server, "before the request")
    offset = log_size(server.log_path) if server.traced else 0
    with clock.phase("request"):
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
        except ValueError as exc:
            raise RequestError(f"bad response: {exc}") from None
    after = None
    if not skip_metrics:
        with clock.phase("metrics"):
            after = _scrape(server, "after the request")
    tally = LogTally()
    if server.traced:
        with clock.phase("log"):
            # The log is written by a background thread: wait briefly for this request's last line.
            deadline = time.monotonic() + log_wait
            while True:
                tally = parse_log_slice(read_log_from(server.log_path, offset), slot)
                if tally.complete or time.monotonic() > deadline:
                    break
                time.sleep(0.002)
    delta, per_pos, n_max = {}, [], None
    if after is not None:
        (values_before, pos_before), (values_after, pos_after) = before, after
        delta = _delta(values_after, values_before)
        positions = sorted(set(pos_after) | set(pos_before))
        n_max = len(positions) or None
        per_pos = [int(pos_after.get(p, 0) - pos_before.get(p, 0)) for p in positions]
        while per_pos and per_pos[-1] == 0:
            per_pos.pop()
    text = generated_text(payload)  # tokenized after the timed part: it costs the request nothing
    tokens = None
    if retokenize and text is not None:
        with clock.phase("tokenize"):
            tokens = tokenize(server, text)
    return Outcome(wall_ms=wall_ms, response=payload, metrics_delta=delta, accepted_per_pos=per_pos, log=tally,
                   tokens=tokens, traced=server.traced, metrics_after=after, n_max=n_max)
