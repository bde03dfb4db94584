"""The published experiment's files from a Hugging Face cache, measured end to end on the real server.

A cache directory in the exact layout ``llama-server -hf`` leaves (refs/main, snapshots -> blobs)
holds a repository named like the published one: a target at two quants (one of them split in
two), an ``mmproj-`` decoy and an ``mtp-`` sidecar. ``specsweep run --hf … --quants …`` must find,
pair and measure them, with the cache moved by ``HF_HOME`` as llama-server's rules say.

Which real models fill the repository is one fixture, ``pair``: the trained Gemma-4 miniature
(target + assistant, ``draft-mtp``: the sidecar is paired automatically, as llama-server pairs it)
or, where that is not available, SmolLM2 with itself as drafter (``draft-simple``, which has no
sidecar rule, so the test passes the sidecar as ``--draft-model``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from specsweep.trained import trained_file

from specsweep.hf_cache import CACHE_ENV
from tests.conftest import SPECSWEEP, THREADS
from tests.hf_layout import REVISION, add_repo, split_gguf, tiny_gguf

pytestmark = pytest.mark.e2e

REPO = "pearsonkyle/gemma4-31b-imatrix-mtp-GGUF"
STEM = "gemma-4-31B-it"
# Two names of the published ladder (Q5_K_S, IQ4_XS, IQ3_M, IQ2_M), both measured. IQ2_M needs an
# imatrix; IQ4_XS would only be listed, never loaded, and making it took ~10 s of this test: the unit
# tier (tests/unit/test_hf_cache.py) resolves and lists it beside these two from placeholder files.
QUANTS = ("Q5_K_S", "IQ3_M")
SPLIT = "IQ3_M"                          # stored as -00001-of-00002 / -00002-of-00002
MEASURED = ("Q5_K_S", "IQ3_M")           # one single-file quant, one split quant
SIDECAR = f"mtp-{STEM}-Q8_0.gguf"
DECOY = f"mmproj-{STEM}-Q8_0.gguf"


@dataclass(frozen=True)
class Pair:
    name: str
    source: Path      # high-precision (or requantizable) target the quants are made from
    drafter: Path     # stored in the repository as the mtp- sidecar
    spec_type: str
    auto_draft: bool  # the sidecar is paired by the llama-server rule (draft-mtp), not passed by hand


@pytest.fixture(scope="module")
def gemma4_pair() -> Pair:
    """The committed Gemma-4 miniature (sha256-checked; not the real Gemma-4-31B): F16 target + F16
    assistant, the assistant stored under the published sidecar's name."""
    target, assistant = trained_file("gemma4-mini", "target"), trained_file("gemma4-mini", "assistant")
    return Pair("gemma4", target, assistant, "draft-mtp", auto_draft=True)


@pytest.fixture(scope="module")
def pair(gemma4_pair) -> Pair:
    return gemma4_pair


@pytest.fixture(scope="module")
def hf_home(pair, tmp_path_factory) -> Path:
    """HF_HOME with hub/models--pearsonkyle--gemma4-31b-imatrix-mtp-GGUF filled from real quants."""
    work = tmp_path_factory.mktemp(f"hf-{pair.name}")
    quantized = subprocess.run([str(SPECSWEEP), "quantize", str(pair.source), "--types", ",".join(QUANTS),
                                "--out", str(work / "ladder"), "--threads", str(THREADS)],
                               capture_output=True, text=True, timeout=900)
    assert quantized.returncode == 0, quantized.stderr
    made = {q: next((work / "ladder").glob(f"*-{q}.gguf")) for q in QUANTS}
    files: dict[str, Path | bytes] = {f"{STEM}-{q}.gguf": path for q, path in made.items() if q != SPLIT}
    n_tensors = _tensor_count(made[SPLIT])
    for part in split_gguf(made[SPLIT], work / "split" / f"{STEM}-{SPLIT}.gguf", n_tensors // 2 + 1):
        files[part.name] = part
    files[DECOY] = tiny_gguf(work / "decoy.gguf", arch="clip", name="vision tower decoy")
    files[SIDECAR] = pair.drafter
    files["README.md"] = b"---\nlicense: apache-2.0\n---\n"
    add_repo(work / "hf-home" / "hub", REPO, files)
    return work / "hf-home"


def _tensor_count(path: Path) -> int:
    import gguf
    return len(gguf.GGUFReader(path).tensors)


def _cli(*args, hf_home: Path, cwd: Path) -> subprocess.CompletedProcess:
    """specsweep with the cache found through HF_HOME alone (every variable that outranks it unset)."""
    env = {k: v for k, v in os.environ.items() if k not in {var for var, _ in CACHE_ENV[:3]}}
    env["HF_HOME"] = str(hf_home)
    return subprocess.run([str(SPECSWEEP), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=900)


@pytest.fixture
def no_orphans_of(hf_home):
    """No llama-server of this test is left running. Only servers whose argv names this test's cache
    count: other people's servers on a shared machine are none of its business."""
    yield
    import time
    deadline = time.monotonic() + 10
    while (left := _servers_using(hf_home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"llama-server processes left behind: {sorted(left)}"


def _servers_using(folder: Path) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if argv and argv[0].endswith(b"llama-server") and any(str(folder).encode() in a for a in argv):
            pids.add(int(entry.name))
    return pids


def test_published_repository_resolves_pairs_and_measures(pair, hf_home, tmp_path, no_orphans_of):
    snapshot = hf_home / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / REVISION
    listed = _cli("models", "list-hf", "--json", hf_home=hf_home, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    kinds = {f["path"]: f["kind"] for f in json.loads(listed.stdout)["files"]}
    assert kinds[SIDECAR] == "mtp sidecar" and kinds[DECOY] == "mmproj (ignored)"
    assert kinds[f"{STEM}-{SPLIT}-00001-of-00002.gguf"] == "model"

    missing = _cli("run", "--hf", REPO, "--quants", "IQ2_M", "--spec-type", pair.spec_type, hf_home=hf_home,
                   cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert missing.stderr.startswith(f"Error: quant IQ2_M is not in the cache for {REPO}")
    assert "quants there: " in missing.stderr and all(q in missing.stderr for q in QUANTS)
    assert f"hf download {REPO} --include '*IQ2_M*'" in missing.stderr

    db = tmp_path / "published.db"
    draft = [] if pair.auto_draft else ["--draft-model", snapshot / SIDECAR]
    run = _cli("run", "--hf", REPO, "--quants", ",".join(MEASURED), "--spec-type", pair.spec_type, *draft,
               "--protocol", "published", "--depths", "0,1,2", "--reps", "1", "--prompt-limit", "2",
               "--max-tokens", "24", "--threads", THREADS, "--request-timeout", "300", "--db", db,
               hf_home=hf_home, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]

    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        requests = conn.execute("SELECT model_label, depth, rep, prompt_id, status, draft_n FROM requests "
                                "WHERE status = 'ok'").fetchall()  # a retried timeout on a busy machine is a row too
        servers = conn.execute("SELECT * FROM servers").fetchall()
        (config_json, provenance_json), = conn.execute("SELECT config_json, provenance_json FROM runs")
    cells = {(r["model_label"], r["depth"], r["rep"], r["prompt_id"]) for r in requests}
    assert len(requests) == len(cells) == len(MEASURED) * 3 * 1 * 2
    assert {r["model_label"] for r in requests} == set(MEASURED)
    assert all(r["draft_n"] > 0 for r in requests if r["depth"] > 0)

    # The server loaded the first split part from the snapshot, and the sidecar drafted.
    argvs = {(s["model_label"], s["depth"]): json.loads(s["argv"]) if isinstance(s["argv"], str) else s["argv"]
             for s in servers}
    split_argv = argvs[(SPLIT, 1)]
    assert str(snapshot / f"{STEM}-{SPLIT}-00001-of-00002.gguf") in split_argv
    assert str(snapshot / SIDECAR) in split_argv and str(snapshot / DECOY) not in split_argv
    assert str(snapshot / SIDECAR) not in argvs[(SPLIT, 0)]
    assert all(s["drafting_confirmed"] == 1 for s in servers if s["depth"] > 0)

    config, provenance = json.loads(config_json), json.loads(provenance_json)
    assert config["protocol"] == "published" and config["sampling"]["temperature"] == 0.3
    assert config["sampling"]["thinking"] is False and config["prompts"] == "mixed-5"
    hf = provenance["models"][SPLIT]["hf"]
    assert hf["repo"] == REPO and hf["revision"] == REVISION and len(hf["files"]) == 2
    assert all(len(f["sha256"]) == 64 and f["blob_matches_sha256"] for f in hf["files"])
    assert len(provenance["models"][SPLIT]["parts_sha256"]) == 2
    drafted = provenance["models"]["Q5_K_S"]["draft_model"]
    assert drafted["path"] == str(snapshot / SIDECAR)
    assert drafted["chosen"] == (f"{REPO}'s mtp- sidecar, as llama-server -hf pairs it" if pair.auto_draft
                                 else "given")

    report = _cli("report", "--db", db, hf_home=hf_home, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert f"Hugging Face cache: {REPO} at revision `{REVISION[:12]}`" in report.stdout
    assert f"{SPLIT} = {STEM}-{SPLIT}-00001-of-00002.gguf (+1 parts), drafted by {SIDECAR}" in report.stdout
