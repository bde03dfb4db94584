"""``specsweep demo``: the whole pipeline on the default model, small enough for a 2-core CPU.

SmolLM2-135M Q4_1 is dequantized to an F16 reference; a ladder of quants is made
from it (one of them needs an importance matrix); each rung's fidelity (KLD,
top-1 agreement) is measured against the reference; then every rung is swept as
a target drafted by the reference (``draft-simple``, depths 0–4, 3 reps,
``mixed-5``, short generations) and the report is written. Re-running resumes:
finished quants, fidelity and requests are reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Drafting, ModelSpec, Sampling, SweepConfig, check_config
from .engine.options import ServerSettings
from .engine.locate import Engine
from .fidelity import kld_base, measure_models
from .models import fetch_default_model
from .quantize import build_ladder, make_reference
from .store import Store
from .sweep import Sweep, prepare

LADDER = ("Q8_0", "Q4_K_M", "Q2_K_S")  # Q2_K_S is refused without an importance matrix


@dataclass(frozen=True)
class DemoSettings:
    out_dir: Path = Path("specsweep-demo")
    types: tuple[str, ...] = LADDER
    depths: tuple[int, ...] = (0, 1, 2, 3, 4)
    reps: int = 3
    max_tokens: int = 16
    prompts: str = "mixed-5"
    threads: int | None = None
    fidelity_chunks: int | None = 4

    @property
    def db(self) -> Path:
        return self.out_dir / "demo.db"


def demo_config(settings: DemoSettings, rungs, reference: Path) -> SweepConfig:
    return check_config(SweepConfig(
        models=tuple(ModelSpec(r.qtype, r.path, draft_model=reference) for r in rungs),
        drafting=Drafting(spec_type="draft-simple", depths=settings.depths),
        prompts=settings.prompts,
        sampling=Sampling(max_tokens=settings.max_tokens, reps=settings.reps),
        server=ServerSettings(ctx_size=1024, threads=settings.threads),
        db=settings.db, name="demo"))


def run_demo(engine: Engine, settings: DemoSettings, say, sweep_progress=None, step_progress=None) -> dict:
    """Returns {"store", "run", "report": {name: path}}; ``say`` prints one status line."""
    out = settings.out_dir
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    say("default model")
    source = fetch_default_model()
    say("F16 reference (dequantized from Q4_1: it carries the Q4_1 error, and it is the reference here)")
    reference = make_reference(engine, source, models_dir, threads=settings.threads)
    say(f"quant ladder: {', '.join(settings.types)}")
    rungs = build_ladder(engine, reference, list(settings.types), models_dir, threads=settings.threads,
                         progress=step_progress)
    config = demo_config(settings, rungs, reference)
    store = Store(config.db)
    sweep = Sweep(prepare(config, engine), store, out / "logs", progress=sweep_progress)
    say(f"fidelity against the reference ({len(rungs)} quants)")
    base = kld_base(engine, reference, models_dir / "reference.kld", chunks=settings.fidelity_chunks,
                    threads=settings.threads)
    measure_models(engine, store, sweep.run.id, [(r.qtype, r.path) for r in rungs], reference, base,
                   threads=settings.threads, skip_known=True)
    say(f"sweep: {sweep.plan.n_requests} requests on {sweep.plan.n_servers} servers")
    result = sweep.execute()
    from .report import write_report
    paths = write_report(store, result.run, out / "report")
    return {"store": store, "run": result.run, "report": paths, "result": result}
