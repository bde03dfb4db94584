"""The engine source's provenance: a trimmed tarball names the pinned source only while it still holds it.

The build cache is keyed by the source id. A patch applied to an unpacked trimmed tarball used to keep
the pinned id from the record inside it, so the patched tree was built under the pinned name, or not
built at all where the pinned engine was already cached.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from specsweep.engine.source import PROVENANCE_FILE, SourceInfo, SourceTree, resolve_source, write_trimmed_tarball

PINNED = SourceInfo(origin="pypi-sdist", source_id="832db0699007f1be" + "0" * 48, sdist_sha256="832db0699007f1be",
                    commit="0c1e570")


@pytest.fixture
def tarball(tmp_path) -> Path:
    """A trimmed tarball of a small llama.cpp-shaped tree whose record (an old one, without a content id)
    names the pinned source."""
    root = tmp_path / "tree" / "llama.cpp"
    for rel, text in {"CMakeLists.txt": "project(llama)\n", "tools/server/server.cpp": "int main() {}\n",
                      "src/llama-context.cpp": "if (cparams.pipeline_parallel) {}\n", "docs/build.md": "docs\n",
                      PROVENANCE_FILE: json.dumps(PINNED.to_json() | {"content_id": None})}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return write_trimmed_tarball(SourceTree(root, PINNED), tmp_path / "llama-src.tar.xz")


def unpacked(tarball: Path, dest: Path) -> Path:
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    return dest / "llama.cpp"


def test_the_tarball_is_trimmed_and_records_what_it_holds(tarball):
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        record = json.loads(tar.extractfile(f"llama.cpp/{PROVENANCE_FILE}").read())
    assert "llama.cpp/docs/build.md" not in names and "llama.cpp/tools/server/server.cpp" in names
    assert names.count(f"llama.cpp/{PROVENANCE_FILE}") == 1
    assert record["source_id"] == PINNED.source_id and len(record["content_id"]) == 64


def test_an_unchanged_tarball_or_tree_is_the_pinned_source(tarball, tmp_path):
    assert resolve_source(tarball).info.source_id == PINNED.source_id
    tree = unpacked(tarball, tmp_path / "x")
    (tree / "build").mkdir()
    (tree / "build" / "CMakeCache.txt").write_text("build output is not source\n")
    (tree / "docs").mkdir()
    (tree / "docs" / "notes.md").write_text("neither is a trimmed folder\n")
    info = resolve_source(tree).info
    assert (info.source_id, info.version, info.origin) == (PINNED.source_id, PINNED.version, "pypi-sdist")


@pytest.mark.parametrize("edited", ["src/llama-context.cpp", "tools/server/server.cpp"])
def test_a_patched_tree_gets_its_own_id_and_says_it_was_modified(tarball, tmp_path, edited):
    tree = unpacked(tarball, tmp_path / "x")
    (tree / edited).write_text((tree / edited).read_text() + "// patched\n")
    info = resolve_source(tree).info
    assert info.source_id != PINNED.source_id and info.source_id == info.content_id
    assert info.version == f"{PINNED.version}+modified"
    assert info.origin == f"tree, modified from {PINNED.name} {PINNED.version} ({PINNED.source_id[:12]})"
    assert info.sdist_sha256 is None and info.commit is None  # not the pinned sdist's any more
