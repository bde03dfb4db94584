"""Synthetic acceptance on the real CPU engine: the per-position estimator recovers known rates.

Short generations make short drafts common (the server trims a draft to the tokens left), which
is exactly what the estimator must account for: dividing by every verification step instead of
the steps that drafted that far is biased low at deep positions. Seeds are fixed, so the run is
reproducible for a given engine build.

The pair is the committed Gemma-4 miniature and the pruned copy `specsweep validate` makes of it
(layers 0 and 23: a Gemma-4 copy must keep a full-attention layer): synthetic acceptance ignores
what was drafted (the draws come from the request seeds), so the model is not this test's subject,
only its cost; the miniature decodes about twice as fast as the default model, and a 2-layer drafter
costs a twelfth of drafting with the target itself.
"""

from __future__ import annotations

import pytest

from specsweep.trained import trained_file
from specsweep.validate import pruned_drafter, validate_rates
from tests.conftest import SHORT_PROMPTS, THREADS

pytestmark = pytest.mark.e2e

RATES = (0.9, 0.75, 0.6, 0.45, 0.3)  # n=5


def test_estimates_recover_configured_rates_despite_short_drafts(engine, tmp_path, no_orphans):
    model = trained_file("gemma4-mini", "target")
    drafter = pruned_drafter(engine, model)
    # Short prompts: synthetic acceptance does not depend on what is asked, and the packaged suite's
    # prompts took longer to process than the 24 tokens to generate.
    check = validate_rates(engine, model, drafter, RATES, tmp_path, max_tokens=24, max_requests=60,
                           threads=THREADS, prompts=str(SHORT_PROMPTS))
    assert check.requests == 60
    assert check.short_drafts > check.steps * 0.15, "short generations should trim many drafts"
    for position in check.positions:
        assert position.drafted_steps > 150
        # Within 3 binomial σ of the configured unconditional rate.
        assert abs(position.estimate - position.configured) <= 3 * position.se, position
    deepest = check.positions[-1]
    # At the deepest position a good share of steps drafted too few tokens to reach it: the naive
    # estimator (accepted / all steps) counts them as rejections and lands further from the truth.
    assert deepest.drafted_steps <= 0.9 * check.steps
    assert deepest.naive_estimate < deepest.estimate
    assert abs(deepest.estimate - deepest.configured) < abs(deepest.naive_estimate - deepest.configured)
