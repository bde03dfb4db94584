"""Request records for analysis tests: a complete, plausible one that each test overrides."""

from __future__ import annotations

from specsweep.records import RequestRecord


def rec(**overrides) -> RequestRecord:
    """A complete, plausible ok record at depth 2; tests override what they look at."""
    values = dict(
        run_id=1, server_id=1, model_label="Q5_K_S", spec_type="draft-mtp", depth=2, rep=0, seed=1000,
        prompt_id="p0", category="code", attempt=1, status="ok", error=None, started_at=100.0,
        wall_ms=1200.0, finish_reason="length", prompt_n=20, prompt_ms=10.0,
        predicted_n=200, predicted_ms=1000.0, predicted_per_second=200.0,
        draft_n=100, draft_n_accepted=80,
        m_draft_tokens=100, m_accepted=80, m_steps=50, m_accepted_per_pos=[45, 35],
        log_steps=None, log_drafted=None, log_accepted=None,
        log_drafted_per_pos=None, log_accepted_per_pos=None,
        log_summary_drafted=None, log_summary_accepted=None,
        max_draft_len=2, completion_tokens=200, crosscheck="ok", content="x",
    )
    values.update(overrides)
    return RequestRecord(**values)


def baseline(**overrides) -> RequestRecord:
    """A depth-0 (no speculation) record."""
    values = dict(spec_type="none", depth=0, draft_n=0, draft_n_accepted=0, m_draft_tokens=0,
                  m_accepted=0, m_steps=0, m_accepted_per_pos=None, max_draft_len=None)
    values.update(overrides)
    return rec(**values)
