"""Models from the local Hugging Face cache, chosen the way the pinned llama-server's ``-hf`` chooses them.

A reader who ran ``llama-server -hf OWNER/REPO:QUANT --spec-type draft-mtp`` has the repository
in the Hugging Face cache. ``--hf OWNER/REPO --quants …`` finds those files offline with the same
rules as the pinned engine (llama.cpp 0c1e570: ``common/hf-cache.cpp`` and ``common/download.cpp``),
so the sweep measures exactly the files the reader's server loaded:

- Cache directory: the first non-empty of ``LLAMA_CACHE``, ``HF_HUB_CACHE``,
  ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``/hub, ``XDG_CACHE_HOME``/huggingface/hub,
  ``HOME``/.cache/huggingface/hub, else the passwd home's .cache/huggingface/hub.
- Repository ``OWNER/REPO`` is the folder ``models--OWNER--REPO``; its revision is the commit in
  ``refs/main`` (else the first valid ref); its files are everything under ``snapshots/REV``
  (plain files or symlinks into ``blobs``), walked depth-first in directory order.
- A quant tag picks the first model file (a ``.gguf`` whose name has none of mmproj, imatrix,
  mtp-, eagle3-, dflash-, dspark-) whose path matches ``TAG[.-]`` ignoring case, skipping split
  parts other than the first; without a tag Q4_K_M, then Q8_0, then the first model file.
- A split model is every file with the same prefix and part count; the server loads the first.
- With ``--spec-type draft-mtp`` the draft model is the ``mtp-`` sidecar of
  ``find_best_sibling``: deepest directory shared with the model, then the exact ``-TAG.`` in
  its name, then the closest quant bits to the tag's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError, UsageError
from .modelspec import HfOrigin

if TYPE_CHECKING:
    from .modelspec import ModelSpec

CACHE_ENV = (("LLAMA_CACHE", ()), ("HF_HUB_CACHE", ()), ("HUGGINGFACE_HUB_CACHE", ()),
             ("HF_HOME", ("hub",)), ("XDG_CACHE_HOME", ("huggingface", "hub")),
             ("HOME", (".cache", "huggingface", "hub")))
DEFAULT_TAGS = ("Q4_K_M", "Q8_0")  # what the server takes when no tag is given
NOT_MODEL = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")
SIDECARS = ("mtp-", "eagle3-", "dflash-", "dspark-")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_SPLIT_RE = re.compile(r"^(.+)-([0-9]{5})-of-([0-9]{5})\Z", re.IGNORECASE)
_TAG_IN_NAME_RE = re.compile(r"[-.]([A-Z0-9_]+)\Z", re.IGNORECASE)
_COMMIT_RE = re.compile(r"^[0-9A-Fa-f]{40}\Z")


# --- where the cache is ------------------------------------------------------------------------

@dataclass(frozen=True)
class CacheLocation:
    path: Path
    source: str  # the environment variable that decided it, or "passwd home"

    def describe(self) -> str:
        return f"{self.path} (from {'$' + self.source if self.source != 'passwd home' else self.source})"


def cache_location(environ: dict | None = None) -> CacheLocation:
    """The directory the pinned llama-server searches for ``-hf`` repositories (``get_cache_directory``)."""
    env = os.environ if environ is None else environ
    for var, suffix in CACHE_ENV:
        value = env.get(var)
        if value:  # the server treats an empty variable as unset
            return CacheLocation(Path(value).joinpath(*suffix), var)
    import pwd
    return CacheLocation(Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "huggingface" / "hub", "passwd home")


# --- file-name rules (download.cpp) ------------------------------------------------------------

@dataclass(frozen=True)
class SplitInfo:
    prefix: str  # the path without .gguf and without -0000i-of-0000N (tag included)
    tag: str     # upper-cased quant tag after the last - or . ("" when none)
    index: int
    count: int


def split_info(path: str) -> SplitInfo:
    """``get_gguf_split_info``: a non-.gguf path gives an empty record (index and count 0)."""
    if not path.endswith(".gguf"):
        return SplitInfo("", "", 0, 0)
    prefix, index, count = path[:-len(".gguf")], 1, 1
    match = _SPLIT_RE.match(prefix)
    if match:
        prefix, index, count = match.group(1), int(match.group(2)), int(match.group(3))
    tag = _TAG_IN_NAME_RE.search(prefix)
    return SplitInfo(prefix, tag.group(1).upper() if tag else "", index, count)


def _leading_int(text: str) -> int:
    """``std::stoi`` of the text from its first digit (0 when there is no digit)."""
    match = re.search(r"[0-9]+", text)
    return int(match.group(0)) if match else 0


def quant_bits(path: str) -> int:
    """``extract_quant_bits``: Q4_0 -> 4, F16 -> 16, IQ2_M -> 2; 0 without a tag."""
    return _leading_int(split_info(path).tag)


def is_model_file(path: str) -> bool:
    """``gguf_filename_is_model``: a .gguf whose file name is no projector, imatrix or sidecar."""
    name = path.rsplit("/", 1)[-1]
    return path.endswith(".gguf") and not any(word in name for word in NOT_MODEL)


def _first_part(path: str) -> bool:
    split = split_info(path)
    return not (split.count > 1 and split.index != 1)


def find_best_model(paths: list[str], tag: str) -> str | None:
    """``find_best_model``: the first model file matching ``TAG[.-]`` (ignoring case), first split part only."""
    for t in ([tag] if tag else list(DEFAULT_TAGS)):
        pattern = re.compile(t + "[.-]", re.IGNORECASE)
        for path in paths:
            if is_model_file(path) and pattern.search(path) and _first_part(path):
                return path
    if not tag:
        return next((p for p in paths if is_model_file(p) and _first_part(p)), None)
    return None


def split_files(paths: list[str], primary: str) -> list[str]:
    """``get_split_files``: every part of the primary's split (the primary alone if it is not split)."""
    split = split_info(primary)
    if split.count <= 1:
        return [primary]
    return [p for p in paths if (s := split_info(p)).count == split.count and s.prefix == split.prefix]


def find_best_sibling(paths: list[str], model: str, keyword: str, tag: str = "") -> str | None:
    """``find_best_sibling``: the ``keyword`` file in the model's directory or one above it, preferring
    the deepest such directory, then an exact ``-TAG.`` in the name, then the closest quant bits
    (to the tag's when a tag is given, else to the model's). Ties keep the first in walk order."""
    tag_upper = tag.upper()
    model_bits = _leading_int(tag_upper) if tag_upper else quant_bits(model)
    model_dir = model.split("/")[:-1]
    best, best_key = None, None
    for path in paths:
        if not path.endswith(".gguf") or keyword not in path:
            continue
        sib_dir = path.split("/")[:-1]
        depth = 0
        while depth < min(len(model_dir), len(sib_dir)) and model_dir[depth] == sib_dir[depth]:
            depth += 1
        if depth != len(sib_dir):  # not in the model's directory or an ancestor of it
            continue
        diff = abs(quant_bits(path) - model_bits)
        exact = bool(tag_upper) and f"-{tag_upper}." in path.upper()
        if best is None:
            better = True
        else:
            best_depth, best_exact, best_diff = best_key
            better = (depth > best_depth or (depth == best_depth and exact and not best_exact)
                      or (depth == best_depth and exact == best_exact and diff < best_diff))
        if better:
            best, best_key = path, (depth, exact, diff)
    return best


# --- what is in the cache (hf-cache.cpp) ----------------------------------------------------------

def is_valid_repo_id(repo_id: str) -> bool:
    """``is_valid_repo_id``: [A-Za-z0-9_] with single / . - between them, exactly one /."""
    if not repo_id or len(repo_id) > 256:
        return False
    slashes, special = 0, True
    for c in repo_id:
        if c.isascii() and (c.isalnum() or c == "_"):
            special = False
        elif c in "/.-":
            if special:
                return False
            slashes += c == "/"
            special = True
        else:
            return False
    return not special and slashes == 1


def folder_to_repo(name: str) -> str | None:
    return name[len("models--"):].replace("--", "/") if name.startswith("models--") else None


def repo_to_folder(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


def cached_revision(repo_folder: Path) -> str | None:
    """``get_cached_ref``: the commit in refs/main, else the first valid ref in directory order."""
    refs = repo_folder / "refs"
    if not refs.is_dir():
        return None
    fallback = None
    with os.scandir(refs) as entries:
        for entry in entries:
            if not entry.is_file():
                continue
            try:
                with open(entry.path, encoding="utf-8", errors="replace") as fh:
                    commit = fh.readline().rstrip("\n")
            except OSError:
                continue
            if not _COMMIT_RE.match(commit):
                continue
            if entry.name == "main":
                return commit
            fallback = fallback or commit
    return fallback


def _walk(root: Path) -> list[str]:
    """Snapshot files in ``recursive_directory_iterator`` order: depth-first, directory order, links
    (even dangling ones, and links to directories) count as files and are not followed."""
    out: list[str] = []

    def visit(directory: str, rel: str) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_symlink() or entry.is_file(follow_symlinks=False):
                    out.append(rel + entry.name)
                elif entry.is_dir(follow_symlinks=False):
                    visit(entry.path, rel + entry.name + "/")

    visit(str(root), "")
    return out


@dataclass(frozen=True)
class CachedRepo:
    repo_id: str
    folder: Path
    revision: str
    files: tuple[str, ...]  # snapshot-relative, '/'-separated, in the server's walk order

    @property
    def snapshot(self) -> Path:
        return self.folder / "snapshots" / self.revision

    def local(self, path: str) -> Path:
        return self.snapshot / path

    def blob(self, path: str) -> str | None:
        """The blob a snapshot entry links to (its sha256 for an LFS file), or None for a plain file."""
        local = self.local(path)
        return Path(os.readlink(local)).name if local.is_symlink() else None

    def size(self, path: str) -> int | None:
        try:
            return self.local(path).stat().st_size
        except OSError:
            return None  # a dangling link: the blob was never fully downloaded

    def model_files(self) -> list[str]:
        return [p for p in self.files if is_model_file(p) and _first_part(p)]

    def quants(self) -> list[str]:
        """The quant tags of the model files present, in walk order (the file name when it has no tag)."""
        return list(dict.fromkeys(split_info(p).tag or p for p in self.model_files()))


def scan(location: CacheLocation | None = None, repo_id: str | None = None) -> list[CachedRepo]:
    """``get_cached_files``: repositories with a snapshot for their ref (optionally only ``repo_id``)."""
    location = location or cache_location()
    if not location.path.is_dir():
        return []
    repos = []
    with os.scandir(location.path) as entries:
        for entry in entries:
            if not entry.is_dir():
                continue
            name = folder_to_repo(entry.name)
            if name is None or not is_valid_repo_id(name) or (repo_id is not None and name != repo_id):
                continue
            folder = Path(entry.path)
            if not (folder / "snapshots").exists():
                continue
            revision = cached_revision(folder)
            if revision is None or not (folder / "snapshots" / revision).is_dir():
                continue
            repos.append(CachedRepo(name, folder, revision, tuple(_walk(folder / "snapshots" / revision))))
    return repos


# --- model specs from a repository ---------------------------------------------------------------

def download_hint(repo_id: str, tags: list[str], location: CacheLocation) -> str:
    """Commands that put the missing files where the server (and this tool) look: one ``hf download``
    per tag (its ``--include`` is not repeatable in every version), or the server itself."""
    cache = f" --cache-dir {location.path}" if location.source == "LLAMA_CACHE" else ""
    hf = "; ".join(f"hf download {repo_id} --include '*{t}*'{cache}" for t in tags) or f"hf download {repo_id}{cache}"
    server = f"llama-server -hf {repo_id}" + (f":{tags[0]} --spec-type draft-mtp" if tags else "")
    return f"download with: {hf} (or: {server})"


def find_repo(repo_id: str, location: CacheLocation | None = None, tags: list[str] | None = None) -> CachedRepo:
    location = location or cache_location()
    if not is_valid_repo_id(repo_id):
        raise UsageError(f"--hf {repo_id!r}: expected OWNER/REPO (letters, digits, _ . - and one /)")
    found = scan(location, repo_id)
    if found:
        return found[0]
    folder = location.path / repo_to_folder(repo_id)
    present = sorted(r.repo_id for r in scan(location))
    if folder.is_dir():
        why = (f"{folder} has no snapshot for its ref (refs/main missing, not a 40-hex commit, "
               "or snapshots/REV absent: an interrupted download?)")
    else:
        same = [r for r in present if r.lower() == repo_id.lower()]
        why = (f"repository {repo_id} is not in the Hugging Face cache at {location.describe()}"
               + (f"; it has {same[0]} (names are case-sensitive)" if same else
                  f"; repositories there: {', '.join(present)}" if present else "; it holds no repositories"))
    raise ModelError(why, hint=download_hint(repo_id, list(tags or []), location) + "; or point LLAMA_CACHE/HF_HOME "
                     "at the cache the server used")


def resolve(repo_id: str, quants: list[str] | tuple[str, ...], location: CacheLocation | None = None,
            server_args: tuple[str, ...] = (), draft_model: Path | None = None) -> list["ModelSpec"]:
    """One ModelSpec per quant tag, labelled by the tag, with the llama-server mtp- sidecar in its origin.

    No quants = the file the server would take for ``-hf OWNER/REPO`` without a tag.
    """
    from .modelspec import ModelSpec
    location = location or cache_location()
    for tag in quants:
        if not TAG_RE.match(tag):
            raise UsageError(f"quant tag {tag!r} may contain only letters, digits and _ . -")
    repo = find_repo(repo_id, location, [q for q in quants if q])
    tags = list(quants) or [""]
    chosen = {tag: find_best_model(list(repo.files), tag) for tag in tags}
    missing = [tag for tag, path in chosen.items() if path is None]
    if missing:
        what = "no model file is" if missing == [""] else (
            f"quant {missing[0]} is" if len(missing) == 1 else f"quants {', '.join(missing)} are")
        raise ModelError(f"{what} not in the cache for {repo_id} (revision {repo.revision[:12]}, {repo.snapshot}); "
                         f"quants there: {', '.join(repo.quants()) or 'none'}",
                         hint=download_hint(repo_id, [t for t in missing if t], location))
    specs = []
    for tag, primary in chosen.items():
        parts = [primary] + [p for p in split_files(list(repo.files), primary) if p != primary]
        count = split_info(primary).count
        absent = [p for p in parts if repo.size(p) is None]
        if absent or (count > 1 and len(parts) != count):
            raise ModelError(f"{repo_id}:{tag or primary}: {primary} is incomplete in the cache "
                             f"({len(parts) - len(absent)} of {max(count, 1)} files present"
                             + (f"; dangling: {', '.join(absent)}" if absent else "") + ")",
                             hint=download_hint(repo_id, [tag or split_info(primary).tag], location))
        sidecar = find_best_sibling(list(repo.files), primary, "mtp-", tag)
        if sidecar is not None and repo.size(sidecar) is None:
            sidecar = None  # a dangling link cannot be loaded; draft-mtp then falls back to in-model layers
        label = tag.upper() if tag else (split_info(primary).tag or Path(primary).stem)
        origin = HfOrigin(repo=repo_id, revision=repo.revision, quant=tag, snapshot=str(repo.snapshot),
                          files=tuple(parts), sidecar=sidecar, cache=location.describe())
        specs.append(ModelSpec(label=label, path=repo.local(primary), draft_model=draft_model,
                               server_args=tuple(server_args), origin=origin))
    return specs


def parse_quants(text: str | None) -> list[str]:
    return [q.strip() for q in (text or "").split(",") if q.strip()]


def resolve_flag(repo: str, quants: str | None) -> list["ModelSpec"]:
    """``--hf OWNER/REPO[:TAG]`` (the server's own syntax) with ``--quants A,B``: the tag comes first."""
    repo, _, tag = repo.rpartition(":") if ":" in repo else (repo, "", "")
    return resolve(repo, list(dict.fromkeys(([tag] if tag else []) + parse_quants(quants))))


def pair_sidecars(models: tuple["ModelSpec", ...], spec_type: str) -> tuple["ModelSpec", ...]:
    """Give every cache model its repository's mtp- sidecar under draft-mtp, as llama-server does.

    A draft model given by hand (``--draft-model``, ``draft_model`` in TOML) is kept; a sidecar
    paired earlier (for another spec type) is paired again or dropped.
    """
    out = []
    for model in models:
        origin = model.origin
        if origin is None or (model.draft_model is not None and not origin.paired):
            out.append(model)
            continue
        sidecar = origin.sidecar_path() if spec_type == "draft-mtp" else None
        out.append(replace(model, draft_model=sidecar, origin=replace(origin, paired=sidecar is not None)))
    return tuple(out)


def with_draft(model: "ModelSpec", draft: Path) -> "ModelSpec":
    """The model drafted by ``draft`` given by hand (it overrides the sidecar rule)."""
    origin = replace(model.origin, paired=False) if model.origin is not None else None
    return replace(model, draft_model=draft, origin=origin)


def origin_provenance(model: "ModelSpec") -> dict:
    """Repository, revision and every file's size and sha256 (memoised). The blob an LFS file links
    to is named by its sha256, so a mismatch flags a damaged cache."""
    from .cache import sha256_file_memo
    origin = model.origin
    if origin is None:
        return {}

    def entry(rel: str) -> dict:
        local = Path(origin.snapshot) / rel
        blob = Path(os.readlink(local)).name if local.is_symlink() else None
        digest = sha256_file_memo(local)
        return {"path": rel, "size_bytes": local.stat().st_size, "sha256": digest, "blob": blob,
                **({"blob_matches_sha256": blob == digest} if blob and len(blob) == 64 else {})}

    return {"repo": origin.repo, "revision": origin.revision, "quant": origin.quant or None,
            "cache": origin.cache, "snapshot": origin.snapshot, "files": [entry(f) for f in origin.files],
            "mtp_sidecar": origin.sidecar}


def draft_choice(model: "ModelSpec") -> str | None:
    """How a model's draft model was chosen, for provenance and the report."""
    if model.draft_model is None:
        return None
    origin = model.origin
    if origin is not None and origin.paired:
        return f"{origin.repo}'s mtp- sidecar, as llama-server -hf pairs it"
    return "given"


# --- listing and downloading -------------------------------------------------------------------
