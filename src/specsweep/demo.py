"""``specsweep demo``: the published experiment in miniature, small enough for a 2-core CPU.

The published table measured Gemma-4-31B with its MTP assistant (``--spec-type draft-mtp``)
at Q5_K_S / IQ4_XS / IQ3_M / IQ2_M and draft depths 1–4. The demo runs the same protocol on
the project's own Gemma-4-architecture miniature (models/gemma4-mini, trained by
training/gemma4_mini.py; a miniature, not the real model): the committed F16 target is the
reference, a Q8_0 / Q5_K_S / IQ4_XS / IQ3_M / IQ2_M ladder is made from it (an importance matrix
for every rung, as the published files were made), each rung's KLD and top-1 agreement are
measured against F16, and every rung is swept with the committed F16 assistant drafting (depths
0–4, 3 reps, ``mixed-5``, temperature 0.3, thinking off: the published protocol) at up to 144
tokens a request instead of the published 200, the most that keeps the demo within 6 minutes on
two cores (347 s at 144, 362 s at 160, 383 s at 200: benchmarks/demo.md); ``--max-tokens 200`` runs
the published length. Re-running resumes: finished quants, fidelity and requests are reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import Drafting, ModelSpec, Sampling, SweepConfig, check_config
from .engine.options import ServerSettings
from .engine.locate import Engine
from .trained import trained_file

# The sweep machinery (numpy, httpx, the executors …) is imported by run_demo only: every
# ``specsweep`` start imports this module for the ``demo`` command's defaults.

# The published quants plus Q8_0 as the high-precision rung, every one made with an importance matrix
# as the published files were (pearsonkyle/gemma4-31b-imatrix-mtp-GGUF), and as the GPU host's ladder
# (training/gemma4_gpu.sh measure, --imatrix auto) is.
LADDER = ("Q8_0", "Q5_K_S", "IQ4_XS", "IQ3_M", "IQ2_M")
DEMO_MODEL = "gemma4-mini"


@dataclass(frozen=True)
class DemoSettings:
    out_dir: Path = Path("specsweep-demo")
    types: tuple[str, ...] = LADDER
    depths: tuple[int, ...] = (0, 1, 2, 3, 4)
    reps: int = 3
    max_tokens: int = 144  # the published 200 takes 383 s on two cores, over the demo's 6 minutes
    prompts: str = "mixed-5"
    threads: int | None = None
    fidelity_chunks: int | None = 4

    @property
    def db(self) -> Path:
        return self.out_dir / "demo.db"


def demo_config(settings: DemoSettings, rungs, assistant: Path) -> SweepConfig:
    return check_config(SweepConfig(
        models=tuple(ModelSpec(r.qtype, r.path, draft_model=assistant) for r in rungs),
        drafting=Drafting(spec_type="draft-mtp", depths=settings.depths),
        prompts=settings.prompts,
        sampling=Sampling(max_tokens=settings.max_tokens, reps=settings.reps, temperature=0.3, thinking=False),
        server=ServerSettings(ctx_size=1024, threads=settings.threads),
        db=settings.db, name="demo", protocol="published"))


def run_demo(engine: Engine, settings: DemoSettings, say, sweep_progress=None, step_progress=None) -> dict:
    """Returns {"store", "run", "report": {name: path}}; ``say`` prints one status line."""
    from .fidelity import kld_base, measure_models
    from .quantize import build_ladder
    from .store import Store
    from .sweep import Sweep, prepare
    out = settings.out_dir
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    say(f"{DEMO_MODEL}: a Gemma-4-architecture miniature trained here (not Gemma-4-31B), F16 target + MTP assistant")
    reference = trained_file(DEMO_MODEL, "target")
    assistant = trained_file(DEMO_MODEL, "assistant")
    say(f"quant ladder: {', '.join(settings.types)}")
    rungs = build_ladder(engine, reference, list(settings.types), models_dir, imatrix="auto",
                         threads=settings.threads, progress=step_progress)
    config = demo_config(settings, rungs, assistant)
    store = Store(config.db)
    sweep = Sweep(prepare(config, engine), store, out / "logs", progress=sweep_progress)
    say(f"fidelity against the F16 target ({len(rungs)} quants)")
    base = kld_base(engine, reference, models_dir / "reference.kld", chunks=settings.fidelity_chunks,
                    threads=settings.threads)
    measure_models(engine, store, sweep.run.id, [(r.qtype, r.path) for r in rungs], reference, base,
                   threads=settings.threads, skip_known=True)
    say(f"sweep: {sweep.plan.n_requests} requests on {sweep.plan.n_servers} servers")
    result = sweep.execute()
    from .report import write_report
    paths = write_report(store, result.run, out / "report")
    return {"store": store, "run": result.run, "report": paths, "result": result}
