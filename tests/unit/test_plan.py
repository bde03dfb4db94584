from pathlib import Path
from types import SimpleNamespace

from specsweep.config import Drafting, ModelSpec, Sampling, ServerSettings, SweepConfig
from specsweep.plan import make_plan
from specsweep.prompts import Prompt
from specsweep.sweep import with_engine_defaults


def prompts(n):
    return [Prompt(f"p{i}", "coding", ({"role": "user", "content": f"q{i}"},)) for i in range(n)]


CONFIG = SweepConfig(
    models=(ModelSpec("A", Path("a.gguf"), draft_model=Path("d.gguf")), ModelSpec("B", Path("b.gguf"))),
    drafting=Drafting(spec_type="draft-mtp", depths=(0, 2)),
    sampling=Sampling(reps=2, seed=10),
)


def test_plan_order_is_pinned():
    plan = make_plan(CONFIG, prompts(2))
    assert [(g.model_label, g.spec_type, g.depth) for g in plan.groups] == [
        ("A", "none", 0), ("A", "draft-mtp", 2), ("B", "none", 0), ("B", "draft-mtp", 2)]
    first = plan.groups[0].requests
    assert [(r.rep, r.seed, r.prompt.id) for r in first] == [(0, 10, "p0"), (0, 10, "p1"), (1, 11, "p0"), (1, 11, "p1")]
    assert plan.n_requests == 16 and plan.n_servers == 4


def test_plan_is_pure():
    assert make_plan(CONFIG, prompts(3)) == make_plan(CONFIG, prompts(3))


def test_server_options_follow_depth():
    plan = make_plan(CONFIG, prompts(1))
    baseline, speculative = plan.groups[0].options, plan.groups[1].options
    assert baseline.spec_type is None and baseline.draft_model is None and baseline.draft_n_max is None
    assert speculative.spec_type == "draft-mtp" and speculative.draft_n_max == 2
    assert speculative.draft_model == Path("d.gguf")
    argv = speculative.argv()
    assert argv[argv.index("--spec-draft-n-max") + 1] == "2"
    assert "--spec-type" not in baseline.argv()


def test_cells_are_unique():
    plan = make_plan(CONFIG, prompts(3))
    cells = [r.cell for r in plan.requests()]
    assert len(cells) == len(set(cells))


def test_parallel_slots_each_get_the_context_of_one_request():
    from dataclasses import replace
    import pytest
    from specsweep.config import check_config
    from specsweep.errors import ConfigError
    side_by_side = make_plan(replace(CONFIG, parallel=4), prompts(2))
    assert [g.options.settings.ctx_size for g in side_by_side.groups] == [4 * 4096] * 4
    assert side_by_side.requests() == make_plan(CONFIG, prompts(2)).requests()  # the same cells
    for one_slot in ("servers", "cells"):  # one request per server: the context of one
        plan = make_plan(replace(CONFIG, parallel=4, side_by_side=one_slot), prompts(2))
        assert [g.options.settings.ctx_size for g in plan.groups] == [4096] * 4
    for bad in (0, "4", True, 65):
        with pytest.raises(ConfigError, match="parallel"):
            check_config(replace(CONFIG, parallel=bad))


def test_a_gpu_engine_offloads_everything_with_flash_attention_unless_the_sweep_says_otherwise(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    config = SweepConfig(models=(ModelSpec("Q8", model),), server=ServerSettings(flash_attn="off"))
    on_gpu, flags = with_engine_defaults(config, SimpleNamespace(backend="cuda"))
    assert (on_gpu.server.gpu_layers, on_gpu.server.draft_gpu_layers, on_gpu.server.flash_attn) == ("all", "all", "off")
    assert flags == ("--gpu-layers all", "--spec-draft-ngl all")  # the sweep's own flash_attn stands
    on_cpu, flags = with_engine_defaults(config, SimpleNamespace(backend="cpu"))
    assert on_cpu == config and flags == ()
    # Ray slots without --gpus-per-server have no GPU of their own: no defaults that would pile them onto one
    assert with_engine_defaults(config, SimpleNamespace(backend="cuda"), gpus=False) == (config, ())
