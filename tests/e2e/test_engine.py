"""The engine against the real llama-server on the real default model (SmolLM2-135M Q4_1)."""

from __future__ import annotations

import json

import httpx
import pytest

from specsweep.client import chat_body, measure_request
from specsweep.engine.options import ServerOptions, ServerSettings
from specsweep.engine.server import LlamaServer
from tests.conftest import THREADS, run_cli

pytestmark = pytest.mark.e2e

HELLO = ({"role": "user", "content": "Name three prime numbers."},)


def test_chat_completion_timings_and_metrics(engine, model_path, tmp_path, no_orphans):
    options = ServerOptions(model=model_path, settings=ServerSettings(ctx_size=512, threads=THREADS))
    with LlamaServer(engine.server, options, tmp_path / "server.log") as server:
        assert server.argv[server.argv.index("--host") + 1] == "127.0.0.1"
        assert server.props["build_info"] == engine.version()
        assert server.props["total_slots"] == 1
        outcome = measure_request(server, chat_body(HELLO, 16, 0.3, 1, False), timeout=120)
        timings = outcome.timings
        assert timings["predicted_n"] > 0 and timings["prompt_n"] > 0 and timings["predicted_ms"] > 0
        assert outcome.metrics_delta["tokens_predicted_total"] == timings["predicted_n"]
        assert outcome.metrics_delta.get("spec_decode_num_draft_tokens_total", 0) == 0
        assert outcome.log.complete
        text = httpx.get(f"{server.base_url}/metrics").text
        assert "llamacpp:spec_decode_num_drafts_total" in text
    assert not server.alive()


def test_draft_simple_with_the_model_drafting_for_itself(engine, model_path, tmp_path, no_orphans):
    options = ServerOptions(model=model_path, draft_model=model_path, spec_type="draft-simple", draft_n_max=3,
                            settings=ServerSettings(ctx_size=512, threads=THREADS))
    with LlamaServer(engine.server, options, tmp_path / "server.log") as server:
        outcome = measure_request(server, chat_body(HELLO, 32, 0.3, 1, False), timeout=180)
    assert "loading draft model" in (tmp_path / "server.log").read_text()
    timings = outcome.timings
    assert timings["draft_n"] > 0
    # Three independent tallies of the same request agree exactly.
    assert outcome.crosscheck() == "ok"
    assert max(d for _, d in outcome.log.steps) <= 3


def test_server_that_dies_at_start_raises_with_exit_code_and_log_tail(engine, tmp_path, no_orphans):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 64)
    server = LlamaServer(engine.server, ServerOptions(model=bogus), tmp_path / "server.log", start_timeout=60)
    from specsweep.errors import ServerError
    with pytest.raises(ServerError) as err:
        server.start()
    assert err.value.process_exit_code not in (None, 0)
    assert err.value.log_tail
    assert not server.alive()


def test_doctor_json_lists_draft_mtp(engine, real_cache):
    result = run_cli("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "draft-mtp" in report["engine"]["spec_types"]
    assert report["engine"]["version"] == engine.version()
    assert report["default_model"]["present"] is True


def test_second_engine_install_finds_the_cached_build(engine, real_cache):
    """The cached path does no build work (its time is in benchmarks/engine-install.md)."""
    engine_json = engine.server.parent.parent / "engine.json"
    before = engine_json.stat().st_mtime_ns
    result = run_cli("engine", "install")
    assert result.returncode == 0, result.stderr
    assert "cached build" in result.stderr and str(engine.server) in result.stdout + result.stderr
    assert engine_json.stat().st_mtime_ns == before
