"""Build a Hugging Face cache directory in the exact layout ``hf download`` / ``llama-server -hf`` leave.

``models--OWNER--REPO/refs/main`` holds the commit; ``snapshots/COMMIT/<path>`` are relative symlinks
into ``blobs/<sha256>`` (or plain files, as on a file system without symlinks).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

REVISION = "3f1c2a9d8e7b6a5c4d3e2f1a0b9c8d7e6f5a4b3c"


def add_repo(cache: Path, repo_id: str, files: dict[str, Path | bytes], revision: str = REVISION,
             symlinks: bool = True, ref: str = "main") -> Path:
    """Put ``files`` (snapshot-relative path -> source file or bytes) into ``cache``; returns the snapshot."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = folder / "snapshots" / revision
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(revision)  # huggingface_hub writes no newline
    for rel, source in files.items():
        target = snapshot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not symlinks:
            _put(source, target)
            continue
        data_hash = _sha256(source)
        blob = folder / "blobs" / data_hash
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            _put(source, blob)
        target.symlink_to(os.path.relpath(blob, target.parent))
    return snapshot


def _sha256(source: Path | bytes) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def _put(source: Path | bytes, target: Path) -> None:
    if isinstance(source, bytes):
        target.write_bytes(source)
    else:
        try:
            os.link(source, target)  # no copy of a model file when the tmp dir shares the file system
        except OSError:
            shutil.copyfile(source, target)


def split_gguf(source: Path, dest: Path, max_tensors: int) -> list[Path]:
    """Write ``source`` as a split model ``dest-0000i-of-0000N.gguf`` (the layout llama-gguf-split and
    convert_hf_to_gguf --split-max-tensors write), through gguf-py's writer."""
    import gguf
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    dest.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(dest, arch, split_max_tensors=max_tensors)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF.") or field.name.startswith("split."):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    parts = sorted(dest.parent.glob(f"{dest.stem}-*-of-*.gguf"))
    assert len(parts) > 1, f"{source} did not split with {max_tensors} tensors per part"
    return parts


def tiny_gguf(path: Path, arch: str = "llama", n_tensors: int = 4, name: str = "tiny") -> Path:
    """A small valid GGUF (F32 tensors, a 3-token vocabulary) for tests that only inspect files."""
    import gguf
    import numpy as np
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(name)
    writer.add_block_count(n_tensors)
    writer.add_token_list(["a", "b", "c"])
    for i in range(n_tensors):
        writer.add_tensor(f"blk.{i}.weight", np.full((4, 8), i, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
