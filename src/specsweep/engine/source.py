"""The pinned llama.cpp source: fetched as the PyPI sdist of llama-cpp-python, verified, unpacked.

The sdist vendors a complete llama.cpp tree. A tree built without ``.git``
reports "commit unknown", so provenance (sdist name, version, sha256, commit)
is recorded by us, in ``specsweep-source.json`` next to the unpacked tree and
inside the trimmed tarball that GPU hosts without registry access receive.
The record carries a hash of the files a build reads: a tree edited after it was
written (a patch applied to an unpacked tarball) gets its own source id, so it is
neither built under the pinned source's name nor served the pinned build from the cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..cache import cache_root, sha256_file
from ..errors import EngineError, UsageError

SDIST_NAME = "llama-cpp-python"
SDIST_VERSION = "0.3.36"
SDIST_FILENAME = "llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_CPP_COMMIT = "0c1e570"
VENDOR_PREFIX = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
PROVENANCE_FILE = "specsweep-source.json"

# Left out of the trimmed tarball: not needed to configure and build the tools.
TRIM_DIRS = ("models", "docs", "media", "tests", "tools/ui/src", "tools/ui/tests", ".git")


@dataclass(frozen=True)
class SourceInfo:
    """Where a llama.cpp tree came from; ``source_id`` keys the build cache."""

    origin: str  # "pypi-sdist", "tarball", "tree"
    source_id: str  # sha256 that identifies the source content
    name: str = SDIST_NAME
    version: str = SDIST_VERSION
    sdist_sha256: str | None = None
    commit: str | None = None
    content_id: str | None = None  # _tree_content_id when the record was written; None in older records

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SourceTree:
    root: Path
    info: SourceInfo


def _pinned_info() -> SourceInfo:
    return SourceInfo(origin="pypi-sdist", source_id=SDIST_SHA256, sdist_sha256=SDIST_SHA256,
                      commit=LLAMA_CPP_COMMIT)


def fetch_sdist(dest_dir: Path | None = None) -> Path:
    """Download the pinned sdist with pip (no build, no deps) and check its sha256."""
    dest_dir = dest_dir or cache_root() / "sdist"
    target = dest_dir / SDIST_FILENAME
    if target.exists() and sha256_file(target) == SDIST_SHA256:
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-d", tmp, f"{SDIST_NAME}=={SDIST_VERSION}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        downloaded = Path(tmp) / SDIST_FILENAME
        if proc.returncode != 0 or not downloaded.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EngineError(f"could not download {SDIST_NAME}=={SDIST_VERSION} with pip: {tail[0]}",
                              hint="on a host without registry access use --source with a tarball "
                                   "made by 'specsweep engine source --out FILE'")
        digest = sha256_file(downloaded)
        if digest != SDIST_SHA256:
            raise EngineError(f"{SDIST_FILENAME} has sha256 {digest}, expected {SDIST_SHA256}")
        downloaded.replace(target)
    return target


def _safe_extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], dest: Path) -> None:
    tar.extractall(dest, members=members, filter="data")


def unpack_pinned(sdist: Path) -> SourceTree:
    """Unpack ``vendor/llama.cpp`` from the sdist once into the cache."""
    info = _pinned_info()
    root = cache_root() / "src" / f"llama.cpp-{info.source_id[:16]}"
    if (root / PROVENANCE_FILE).exists():
        return SourceTree(root, info)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            if m.name.startswith(VENDOR_PREFIX):
                m.name = m.name[len(VENDOR_PREFIX):]
                if m.name:
                    members.append(m)
        _safe_extract(tar, members, tmp)
    info = replace(info, content_id=_tree_content_id(tmp))
    (tmp / PROVENANCE_FILE).write_text(json.dumps(info.to_json(), indent=2))
    shutil.rmtree(root, ignore_errors=True)
    tmp.replace(root)
    return SourceTree(root, info)


def _find_tree_root(top: Path) -> Path:
    for candidate in [top, *sorted(p for p in top.iterdir() if p.is_dir())]:
        if (candidate / "CMakeLists.txt").exists() and (candidate / "tools" / "server").is_dir():
            return candidate
        vendored = candidate / "vendor" / "llama.cpp"
        if (vendored / "CMakeLists.txt").exists():
            return vendored
    raise UsageError(f"{top} does not look like a llama.cpp source tree (no CMakeLists.txt with tools/server)")


def _trimmed(rel: str) -> bool:
    """A path (relative to the tree, posix) that the trimmed tarball leaves out."""
    return any(rel == d or rel.startswith(d + "/") for d in TRIM_DIRS)


def _tree_content_id(root: Path) -> str:
    """Hash of the files a build reads: every file but the trimmed folders, build output and our own record."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or _trimmed(rel) or rel == PROVENANCE_FILE or rel.split("/")[0] == "build":
            continue
        digest.update(rel.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _recorded_info(root: Path, data: dict, origin: str) -> SourceInfo:
    """The record's provenance if the tree still holds what it recorded; else the tree's own id, marked modified."""
    recorded = SourceInfo(**{**data, "origin": data.get("origin", origin)})
    if recorded.content_id is None:  # a record from before content ids: nothing to check it against
        return recorded
    content_id = _tree_content_id(root)
    if content_id == recorded.content_id:
        return recorded
    return SourceInfo(origin=f"{origin}, modified from {recorded.name} {recorded.version} "
                             f"({recorded.source_id[:12]})",
                      source_id=content_id, name=recorded.name, version=f"{recorded.version}+modified",
                      content_id=content_id)


def resolve_source(source: Path | None) -> SourceTree:
    """The tree to build: the pinned sdist by default, or a user-given tree or tarball."""
    if source is None:
        return unpack_pinned(fetch_sdist())
    source = Path(source).expanduser()
    if not source.exists():
        raise UsageError(f"--source {source}: no such file or directory")
    if source.is_file():
        if not tarfile.is_tarfile(source):
            raise UsageError(f"--source {source}: not a directory or a tar archive")
        tar_id = sha256_file(source)
        if tar_id == SDIST_SHA256:
            return unpack_pinned(source)
        dest = cache_root() / "src" / f"tarball-{tar_id[:16]}"
        if not dest.exists():
            tmp = dest.with_name(dest.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            with tarfile.open(source) as tar:
                _safe_extract(tar, tar.getmembers(), tmp)
            tmp.replace(dest)
        source = dest
        origin = "tarball"
    else:
        origin = "tree"
    root = _find_tree_root(source)
    recorded = root / PROVENANCE_FILE
    if recorded.exists():
        return SourceTree(root, _recorded_info(root, json.loads(recorded.read_text()), origin))
    content_id = _tree_content_id(root)
    return SourceTree(root, SourceInfo(origin=origin, source_id=content_id, name="llama.cpp", version="unknown",
                                       content_id=content_id))


def write_trimmed_tarball(tree: SourceTree, out: Path) -> Path:
    """Pack the tree without models/docs/tests/UI sources, with our provenance inside (~7 MB xz)."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fh = open(out, "wb")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        rel = info.name.split("/", 1)[1] if "/" in info.name else ""
        return None if _trimmed(rel) or rel == PROVENANCE_FILE else info

    # The record goes in with the content id of what the tarball holds, so an edit after unpacking shows.
    # resolve_source has hashed a tarball's or a tree's files already (and checked them against their
    # record); the pinned sdist's info leaves it to be computed here.
    content_id = tree.info.content_id or _tree_content_id(tree.root)
    record = json.dumps(replace(tree.info, content_id=content_id).to_json(), indent=2).encode()
    with fh, tarfile.open(fileobj=fh, mode="w:xz") as tar:
        tar.add(tree.root, arcname="llama.cpp", filter=keep)
        member = tarfile.TarInfo(f"llama.cpp/{PROVENANCE_FILE}")
        member.size, member.mode = len(record), 0o644
        tar.addfile(member, io.BytesIO(record))
    return out
