"""Models from the Hugging Face cache: the pinned llama-server's directory, tag, split and sidecar rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from specsweep import hf_cache
from specsweep.cli import build_parser, main
from specsweep.cli.options import config_from_args
from specsweep.hf_cache import CACHE_ENV, cache_location, find_best_model, find_best_sibling, split_info
from tests.hf_layout import REVISION, add_repo, split_gguf, tiny_gguf

REPO = "pearsonkyle/gemma4-31b-imatrix-mtp-GGUF"
STEM = "gemma-4-31B-it"


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No cache variable from the machine leaks in; the sha256 memo stays in tmp."""
    for var, _ in CACHE_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPECSWEEP_CACHE", str(tmp_path / "specsweep-cache"))
    return monkeypatch


@pytest.fixture
def published(tmp_path, env) -> Path:
    """The published repository's shape: four quants (IQ2_M split in two), an mmproj decoy that
    carries a quant tag, and an mtp- sidecar; blobs symlinked, in the default cache under HOME."""
    src = tmp_path / "src"
    src.mkdir()
    files = {f"{STEM}-{q}.gguf": tiny_gguf(src / f"{q}.gguf", name=q) for q in ("Q5_K_S", "IQ4_XS", "IQ3_M")}
    for part in split_gguf(tiny_gguf(src / "IQ2_M.gguf", name="IQ2_M"), src / f"{STEM}-IQ2_M.gguf", 2):
        files[part.name] = part
    files[f"mmproj-{STEM}-Q8_0.gguf"] = tiny_gguf(src / "mmproj.gguf", arch="clip", name="mmproj")
    files[f"mtp-{STEM}-Q8_0.gguf"] = tiny_gguf(src / "mtp.gguf", arch="gemma4-assistant", name="mtp")
    files["README.md"] = b"# card\n"
    add_repo(tmp_path / "home" / ".cache" / "huggingface" / "hub", REPO, files)
    return tmp_path / "home" / ".cache" / "huggingface" / "hub"


# --- the cache directory -------------------------------------------------------------------------

def test_cache_directory_follows_the_servers_order_of_variables(tmp_path):
    env = {"HOME": "/h"}
    assert cache_location(env).path == Path("/h/.cache/huggingface/hub")
    env["XDG_CACHE_HOME"] = "/x"
    assert cache_location(env).path == Path("/x/huggingface/hub")
    env["HF_HOME"] = "/hf"
    assert cache_location(env).path == Path("/hf/hub")
    env["HUGGINGFACE_HUB_CACHE"] = "/old-hub"
    assert cache_location(env).path == Path("/old-hub")
    env["HF_HUB_CACHE"] = "/hub"
    assert cache_location(env).path == Path("/hub")
    env["LLAMA_CACHE"] = "/llama"  # taken as is: no hub/ appended
    assert cache_location(env) == hf_cache.CacheLocation(Path("/llama"), "LLAMA_CACHE")


def test_an_empty_variable_counts_as_unset_and_no_home_falls_back_to_passwd():
    import pwd
    assert cache_location({"LLAMA_CACHE": "", "HF_HOME": "/hf"}).path == Path("/hf/hub")
    fallback = cache_location({})
    assert fallback.source == "passwd home"
    assert fallback.path == Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache/huggingface/hub"


def test_environment_variables_move_the_cache_the_cli_reads(published, env, tmp_path, capsys):
    assert main(["models", "list-hf", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["from"] == "HOME" and {f["repo"] for f in listed["files"]} == {REPO}
    env.setenv("HF_HOME", str(tmp_path / "elsewhere"))  # HF_HOME/hub wins over HOME: the repo is not there
    assert main(["run", "--hf", REPO, "--quants", "IQ4_XS", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("Error: repository")
    assert str(tmp_path / "elsewhere" / "hub") in err and "$HF_HOME" in err
    env.setenv("LLAMA_CACHE", str(published))  # LLAMA_CACHE outranks HF_HOME
    args = build_parser().parse_args(["run", "--hf", REPO, "--quants", "IQ4_XS"])
    assert config_from_args(args).models[0].origin.cache.endswith("(from $LLAMA_CACHE)")


# --- file-name rules ------------------------------------------------------------------------------

def test_split_info_and_quant_bits_follow_download_cpp():
    assert split_info("a/gemma-4-31B-it-IQ2_M-00001-of-00003.gguf") == \
        hf_cache.SplitInfo("a/gemma-4-31B-it-IQ2_M", "IQ2_M", 1, 3)
    assert split_info("model.q4_k_m.gguf").tag == "Q4_K_M"
    assert split_info("model.GGUF") == hf_cache.SplitInfo("", "", 0, 0)  # the suffix is case-sensitive
    assert [hf_cache.quant_bits(p) for p in ("x-Q4_0.gguf", "x-F16.gguf", "x-IQ2_M.gguf", "x-BF16.gguf",
                                              "x.gguf")] == [4, 16, 2, 16, 0]


def test_quant_tags_match_like_the_server():
    files = ["sub/m-Q4_K_M.gguf", "m-q4_k.gguf", "mmproj-m-Q8_0.gguf", "m-IQ2_M-00002-of-00002.gguf",
             "m-IQ2_M-00001-of-00002.gguf", "imatrix-Q8_0.gguf", "m-Q8_0.gguf"]
    assert find_best_model(files, "Q4_K") == "m-q4_k.gguf"        # Q4_K[.-] does not match Q4_K_M
    assert find_best_model(files, "q4_k_m") == "sub/m-Q4_K_M.gguf"  # case-insensitive, any directory
    assert find_best_model(files, "Q8_0") == "m-Q8_0.gguf"          # mmproj and imatrix files are not models
    assert find_best_model(files, "IQ2_M") == "m-IQ2_M-00001-of-00002.gguf"  # the first split part
    assert find_best_model(files, "IQ3_M") is None
    assert find_best_model(files, "") == "sub/m-Q4_K_M.gguf"        # no tag: Q4_K_M, then Q8_0, then first
    assert find_best_model(["m-Q8_0.gguf", "m-F16.gguf"], "") == "m-Q8_0.gguf"
    assert find_best_model(["m-F16.gguf", "mtp-m-F16.gguf"], "") == "m-F16.gguf"
    assert hf_cache.split_files(files, "m-IQ2_M-00001-of-00002.gguf") == [
        "m-IQ2_M-00002-of-00002.gguf", "m-IQ2_M-00001-of-00002.gguf"]


def test_sidecar_choice_follows_find_best_sibling():
    model = "m-IQ4_XS.gguf"
    # the exact tag beats closer bits; then closest bits to the tag's; the first of equals wins
    assert find_best_sibling(["mtp-m-Q8_0.gguf", "mtp-m-IQ4_XS.gguf", "mtp-m-Q4_0.gguf"], model, "mtp-",
                             "IQ4_XS") == "mtp-m-IQ4_XS.gguf"
    assert find_best_sibling(["mtp-m-Q8_0.gguf", "mtp-m-Q5_0.gguf", "mtp-m-F16.gguf"], model, "mtp-",
                             "IQ4_XS") == "mtp-m-Q5_0.gguf"
    assert find_best_sibling(["mtp-m-Q3_K.gguf", "mtp-m-Q5_K.gguf"], model, "mtp-", "IQ4_XS") == "mtp-m-Q3_K.gguf"
    # no tag: bits of the model file itself
    assert find_best_sibling(["mtp-m-Q8_0.gguf", "mtp-m-F16.gguf"], "m-BF16.gguf", "mtp-") == "mtp-m-F16.gguf"
    # the model's directory or an ancestor, deepest first; never a sibling directory
    assert find_best_sibling(["mtp-F16.gguf", "q/mtp-Q4_0.gguf", "r/mtp-Q8_0.gguf"], "q/m-Q8_0.gguf", "mtp-",
                             "Q8_0") == "q/mtp-Q4_0.gguf"
    assert find_best_sibling(["r/mtp-Q8_0.gguf"], "q/m-Q8_0.gguf", "mtp-", "Q8_0") is None
    # only .gguf files with the keyword; an mmproj is never a drafter
    assert find_best_sibling(["mtp-m-Q8_0.bin", "mmproj-m-Q8_0.gguf"], model, "mtp-", "Q8_0") is None


def test_repo_ids_and_refs_follow_hf_cache_cpp(tmp_path):
    assert hf_cache.is_valid_repo_id("pearsonkyle/gemma4-31b-imatrix-mtp-GGUF")
    for bad in ("noslash", "a/b/c", "a//b", "-a/b", "a/b.", "a /b", "a/b:Q4_0"):
        assert not hf_cache.is_valid_repo_id(bad)
    folder = tmp_path / "models--o--r"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "dev").write_text("b" * 40)
    assert hf_cache.cached_revision(folder) == "b" * 40  # no main: the first valid ref
    (folder / "refs" / "main").write_text("not a commit")
    assert hf_cache.cached_revision(folder) == "b" * 40
    (folder / "refs" / "main").write_text("c" * 40 + "\n")
    assert hf_cache.cached_revision(folder) == "c" * 40


# --- resolving a repository -------------------------------------------------------------------------

def test_quants_resolve_to_files_labels_splits_and_the_sidecar(published):
    specs = hf_cache.resolve(REPO, ["Q5_K_S", "iq4_xs", "IQ2_M"])
    assert [s.label for s in specs] == ["Q5_K_S", "IQ4_XS", "IQ2_M"]
    snapshot = published / f"models--{REPO.replace('/', '--')}" / "snapshots" / REVISION
    assert specs[0].path == snapshot / f"{STEM}-Q5_K_S.gguf" and specs[0].path.is_symlink()
    assert specs[2].path.name == f"{STEM}-IQ2_M-00001-of-00002.gguf"
    assert specs[2].origin.files == (f"{STEM}-IQ2_M-00001-of-00002.gguf", f"{STEM}-IQ2_M-00002-of-00002.gguf")
    assert {s.origin.sidecar for s in specs} == {f"{STEM}-Q8_0.gguf".join(("mtp-", ""))}
    assert all(s.draft_model is None and s.origin.revision == REVISION for s in specs)
    # the server's own OWNER/REPO:QUANT spelling works too
    assert [s.label for s in hf_cache.resolve_flag(f"{REPO}:IQ3_M", "Q5_K_S,IQ3_M")] == ["IQ3_M", "Q5_K_S"]


def test_draft_mtp_pairs_the_sidecar_and_an_explicit_draft_model_overrides_it(published, tmp_path):
    sidecar = next(published.rglob(f"snapshots/*/mtp-{STEM}-Q8_0.gguf"))
    argv = ["run", "--hf", REPO, "--quants", "Q5_K_S,IQ4_XS"]
    config = config_from_args(build_parser().parse_args([*argv, "--spec-type", "draft-mtp"]))
    assert [m.draft_model for m in config.models] == [sidecar, sidecar]
    config = config_from_args(build_parser().parse_args([*argv, "--spec-type", "ngram-simple"]))
    assert [m.draft_model for m in config.models] == [None, None]
    mine = tiny_gguf(tmp_path / "mine.gguf")
    config = config_from_args(build_parser().parse_args([*argv, "--spec-type", "draft-mtp", "--draft-model", str(mine)]))
    assert [m.draft_model for m in config.models] == [mine, mine]
    # the sidecar given by hand to another spec type stays, and counts as given
    config = config_from_args(build_parser().parse_args([*argv, "--spec-type", "draft-simple", "--draft-model",
                                                         str(sidecar)]))
    assert [m.draft_model for m in config.models] == [sidecar, sidecar]
    assert [hf_cache.draft_choice(m) for m in config.models] == ["given", "given"]


def test_missing_quant_is_one_error_line_listing_what_is_there(published, capsys):
    assert main(["run", "--hf", REPO, "--quants", "Q5_K_S,Q4_K_M", "--spec-type", "draft-mtp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"Error: quant Q4_K_M is not in the cache for {REPO}")
    assert "quants there: " in err and all(q in err for q in ("Q5_K_S", "IQ4_XS", "IQ3_M", "IQ2_M"))
    assert "Q8_0" not in err.split("quants there:")[1].split("(hint")[0]  # the mmproj and sidecar are no quants
    assert f"hf download {REPO} --include '*Q4_K_M*'" in err and f"llama-server -hf {REPO}:Q4_K_M" in err


def test_unknown_repo_and_bad_input_are_one_line(published, capsys):
    assert main(["run", "--hf", "pearsonkyle/GEMMA4-31b-imatrix-mtp-GGUF", "--quants", "IQ4_XS"]) == 2
    assert "names are case-sensitive" in capsys.readouterr().err
    assert main(["run", "--hf", "not-a-repo", "--quants", "IQ4_XS"]) == 2
    assert capsys.readouterr().err.startswith("Error: --hf 'not-a-repo': expected OWNER/REPO")
    assert main(["run", "--quants", "IQ4_XS", "--model", "x.gguf"]) == 2
    assert "--quants needs --hf" in capsys.readouterr().err
    assert main(["run", "--hf", REPO, "--quants", "IQ4(XS"]) == 2
    assert "quant tag" in capsys.readouterr().err


def test_plain_files_without_blobs_and_a_dangling_link(tmp_path, env):
    env.setenv("LLAMA_CACHE", str(tmp_path / "c"))
    model = tiny_gguf(tmp_path / "m.gguf")
    snapshot = add_repo(tmp_path / "c", "o/r", {"m-Q8_0.gguf": model, "m-Q4_0.gguf": model}, symlinks=False)
    assert not (snapshot / "m-Q8_0.gguf").is_symlink()
    assert hf_cache.resolve("o/r", ["Q8_0"])[0].path == snapshot / "m-Q8_0.gguf"
    (snapshot / "m-Q4_0.gguf").unlink()
    (snapshot / "m-Q4_0.gguf").symlink_to("../../blobs/" + "0" * 64)  # an interrupted download
    with pytest.raises(hf_cache.ModelError, match="incomplete in the cache"):
        hf_cache.resolve("o/r", ["Q4_0"])


def test_no_quants_takes_what_the_server_takes_without_a_tag(tmp_path, env):
    env.setenv("LLAMA_CACHE", str(tmp_path / "c"))
    model = tiny_gguf(tmp_path / "m.gguf")
    add_repo(tmp_path / "c", "o/r", {"m-F16.gguf": model, "m-Q8_0.gguf": model})
    assert [s.label for s in hf_cache.resolve("o/r", [])] == ["Q8_0"]


def test_toml_models_from_the_cache_and_the_published_protocol(published, tmp_path):
    toml = tmp_path / "sweep.toml"
    toml.write_text(f'protocol = "published"\n[drafting]\nspec_type = "draft-mtp"\n[sampling]\nreps = 2\n'
                    f'[[models]]\nhf = "{REPO}"\nquants = ["IQ4_XS", "IQ3_M"]\n')
    config = config_from_args(build_parser().parse_args(["run", "--config", str(toml), "--max-tokens", "50"]))
    assert [m.label for m in config.models] == ["IQ4_XS", "IQ3_M"]
    assert all(m.draft_model.name == f"mtp-{STEM}-Q8_0.gguf" for m in config.models)
    assert config.protocol == "published" and config.drafting.depths == (0, 1, 2, 3, 4)
    assert (config.sampling.reps, config.sampling.max_tokens, config.sampling.temperature) == (2, 50, 0.3)
    assert config.prompts == "mixed-5" and config.sampling.thinking is False
    toml.write_text(f'[[models]]\nhf = "{REPO}"\nlabel = "x"\nquants = ["IQ4_XS"]\n')
    with pytest.raises(hf_cache.UsageError, match="takes no label"):
        config_from_args(build_parser().parse_args(["run", "--config", str(toml)]))


def test_protocol_flag_fills_only_what_flags_leave_unset(published):
    args = build_parser().parse_args(["run", "--hf", REPO, "--quants", "IQ4_XS", "--protocol", "published",
                                      "--depths", "0,1", "--reps", "1"])
    config = config_from_args(args)
    assert config.drafting.depths == (0, 1) and config.sampling.reps == 1 and config.sampling.max_tokens == 200
    with pytest.raises(hf_cache.UsageError, match="unknown protocol"):
        config_from_args(build_parser().parse_args(["run", "--hf", REPO, "--protocol", "paper"]))


def test_split_model_is_inspected_as_one_and_provenance_records_every_file(published):
    from specsweep.models import inspect_gguf
    from specsweep.provenance import model_provenance
    spec = hf_cache.resolve(REPO, ["IQ2_M"])[0]
    info = inspect_gguf(spec.path)
    assert len(info.parts) == 2 and info.parameter_count == 4 * 32
    assert info.size_bytes == sum(p.stat().st_size for p in info.parts)
    spec = hf_cache.pair_sidecars((spec,), "draft-mtp")[0]
    prov = model_provenance(info, spec)
    assert len(prov["parts_sha256"]) == 2
    assert prov["hf"]["repo"] == REPO and prov["hf"]["revision"] == REVISION
    assert [f["blob_matches_sha256"] for f in prov["hf"]["files"]] == [True, True]
    assert prov["draft_model"]["chosen"].endswith("as llama-server -hf pairs it")
    with pytest.raises(hf_cache.ModelError, match="give the first part"):
        inspect_gguf(spec.path.with_name(f"{STEM}-IQ2_M-00002-of-00002.gguf"))


def test_list_hf_shows_repositories_quants_sidecars_and_sizes(published, capsys):
    assert main(["models", "list-hf", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["files"]
    kinds = {r["path"]: r["kind"] for r in rows}
    assert kinds[f"mtp-{STEM}-Q8_0.gguf"] == "mtp sidecar"
    assert kinds[f"mmproj-{STEM}-Q8_0.gguf"] == "mmproj (ignored)"
    split = next(r for r in rows if r["tag"] == "IQ2_M")
    assert split["parts"] == 2 and split["size_bytes"] > 0
    assert [r["tag"] for r in rows if r["kind"] == "model"] and len(rows) == 6
    assert main(["models", "list-hf"]) == 0
    assert "mtp sidecar" in capsys.readouterr().err  # the table goes where every table goes (stderr)


def test_download_without_huggingface_hub_says_what_to_run(published, monkeypatch, capsys):
    import builtins
    real_import = builtins.__import__

    def no_hub(name, *args, **kwargs):
        if name.startswith("huggingface_hub"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_hub)
    assert main(["models", "download-hf", REPO, "--quants", "IQ3_M"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "huggingface_hub" in err and f"hf download {REPO}" in err
