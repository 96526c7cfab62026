"""Token sources: the built-in byte-level Shakespeare corpus, or nanoGPT-style token files.

Batches are a pure function of (seed, step): the batch at step k is the same whatever ran before,
so every parameterization and shape sees the same data, and a restarted trial sees the same data.
Validation batches do not depend on the seed, so validation losses are comparable across seeds.

Token files are checked once, up front, by the driver (``check_source``): both files present, whole
uint16 tokens, long enough for a sequence, every id below ``vocab_size``. Their content hash
(``fingerprint``) is part of every trial's id, so rows computed on other data are never reused.
Both come from one read of each file, cached by (path, size, mtime) so a large corpus is read once.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .errors import FieldError

BUILTIN = "shakespeare"
BYTE_VOCAB = 256
VAL_FRACTION = 0.1
SPLITS = ("train", "val")
_VAL_SEED = 0x5EED  # fixed: validation batches are identical for every trial
_CHUNK = 1 << 24  # tokens per read when scanning a token file


class DataError(FieldError):
    """Bad data setting; ``field`` names the setting (data, vocab_size, seq_len), the message the fix."""


@dataclass(frozen=True)
class TokenSource:
    name: str
    train: np.ndarray
    val: np.ndarray
    vocab_size: int

    def batch(self, split: str, index: int, *, batch_size: int, seq_len: int, seed: int = 0):
        """(x, y) int64 tensors of shape (batch_size, seq_len); y is x shifted by one token."""
        tokens = self.train if split == "train" else self.val
        rng = np.random.default_rng((seed if split == "train" else _VAL_SEED, index))
        starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch_size)
        window = tokens[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64)  # (B, T+1)
        t = torch.from_numpy(window)
        return t[:, :-1], t[:, 1:]


@lru_cache(maxsize=1)
def _builtin_bytes() -> np.ndarray:
    blob = resources.files("completep_sweep").joinpath("corpus/shakespeare.txt.gz").read_bytes()
    return np.frombuffer(gzip.decompress(blob), dtype=np.uint8)


def _builtin_splits() -> dict[str, np.ndarray]:
    data = _builtin_bytes()
    cut = int(len(data) * (1 - VAL_FRACTION))
    return {"train": data[:cut], "val": data[cut:]}


def load_source(data: str, vocab_size: int, seq_len: int = 0) -> TokenSource:
    """Open a preset's ``data`` setting. Cheap checks only (a worker never rescans a large corpus):
    the driver ran ``check_source`` before the trial was scheduled."""
    if data == BUILTIN:
        check_source(data, vocab_size, seq_len)
        splits = _builtin_splits()
    else:
        path = Path(data).expanduser()
        for split in SPLITS:
            _check_file(path / f"{split}.bin", path)
        splits = {s: np.memmap(path / f"{s}.bin", dtype=np.uint16, mode="r") for s in SPLITS}
        _check_lengths(data, {s: len(v) for s, v in splits.items()}, seq_len)
    return TokenSource(data, splits["train"], splits["val"], vocab_size)


def check_source(data: str, vocab_size: int, seq_len: int = 0) -> None:
    """Everything a trial will need from its data, checked before any compute; DataError names the fix."""
    if data == BUILTIN:
        if vocab_size < BYTE_VOCAB:
            raise DataError(
                "vocab_size",
                f"vocab_size {vocab_size} is too small for the byte-level corpus "
                f"'{BUILTIN}'; set vocab_size = 256",
            )
        lengths = {s: len(v) for s, v in _builtin_splits().items()}
    else:
        if vocab_size > 1 << 16:
            raise DataError(
                "vocab_size",
                f"vocab_size {vocab_size} does not fit uint16 token files; use vocab_size <= 65536",
            )
        info = inspect_tokens(data)
        lengths = {s: info[s]["tokens"] for s in SPLITS}
        for split in SPLITS:
            if info[split]["max_id"] >= vocab_size:
                raise DataError(
                    "vocab_size",
                    f"{data}/{split}.bin holds token id {info[split]['max_id']}, "
                    f"not below vocab_size {vocab_size}; raise vocab_size above it "
                    "or re-tokenize the data",
                )
    _check_lengths(data, lengths, seq_len)


def _check_lengths(data: str, lengths: dict[str, int], seq_len: int) -> None:
    for split, n in lengths.items():
        if n <= seq_len + 1:
            raise DataError(
                "seq_len",
                f"the {split} split of {data!r} has {n} tokens, not more than seq_len + 1 "
                f"= {seq_len + 1}; lower seq_len or use more data",
            )


def _check_file(file: Path, path: Path) -> None:
    if not file.is_file():
        raise DataError(
            "data",
            f"{path} has no {file.name}; point data at a directory with train.bin and "
            f"val.bin (uint16 token files), or use data = '{BUILTIN}'",
        )
    size = file.stat().st_size
    if size == 0 or size % 2:
        what = "is empty" if size == 0 else f"has {size} bytes, an odd number"
        raise DataError(
            "data",
            f"{file} {what}: token files hold uint16 tokens (2 bytes each); "
            "re-export it, e.g. np.array(ids, dtype=np.uint16).tofile(path)",
        )


def inspect_tokens(data: str) -> dict[str, dict]:
    """Per split: tokens, largest id and sha256 of a token directory's ``train.bin``/``val.bin``.

    Raises DataError for a missing, empty or odd-sized file (uint16 tokens are two bytes each).
    """
    path = Path(data).expanduser()
    missing = [f"{s}.bin" for s in SPLITS if not (path / f"{s}.bin").is_file()]
    if missing:  # name both when both are missing
        _check_file(path / " or ".join(missing), path)
    out = {}
    for split in SPLITS:
        _check_file(path / f"{split}.bin", path)
        out[split] = _cached_scan(path / f"{split}.bin")
    return out


def fingerprint(data: str) -> str:
    """Content hash of the data ('' for the built-in corpus, which is versioned with the package)."""
    if data == BUILTIN:
        return ""
    info = inspect_tokens(data)
    return hashlib.sha256("".join(info[s]["sha256"] for s in SPLITS).encode()).hexdigest()[:16]


def resolve_data(data: str) -> str:
    """Token-file directories as absolute paths: workers may run in another working directory."""
    return data if data == BUILTIN else str(Path(data).expanduser().resolve())


# ---------------------------------------------------------------- the scan, cached


def _cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "completep-sweep" / "token-files.json"


def _scan(file: Path) -> dict:
    tokens = np.memmap(file, dtype=np.uint16, mode="r")
    digest, max_id = hashlib.sha256(), 0
    for start in range(0, len(tokens), _CHUNK):
        chunk = np.asarray(tokens[start : start + _CHUNK])
        digest.update(chunk.tobytes())
        max_id = max(max_id, int(chunk.max()))
    return {"tokens": int(len(tokens)), "max_id": max_id, "sha256": digest.hexdigest()}


def _cached_scan(file: Path) -> dict:
    """``_scan`` once per (path, size, mtime): a re-run, a re-validate or a worker pays nothing."""
    stat = file.stat()
    key = f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_file = _cache_path()
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache = {k: v for k, v in cache.items() if not k.startswith(f"{file.resolve()}:")}  # stale entries
        cache[key] = _scan(file)
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps(cache))
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only home: scan again next time, nothing else changes
    return cache[key]
