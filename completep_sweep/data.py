"""Token sources: the built-in byte-level Shakespeare corpus, or nanoGPT-style token files.

Batches are a pure function of (seed, step): the batch at step k is the same whatever ran before,
so every parameterization and shape sees the same data, and a restarted trial sees the same data.
Validation batches do not depend on the seed, so validation losses are comparable across seeds.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

BUILTIN = "shakespeare"
BYTE_VOCAB = 256
VAL_FRACTION = 0.1
_VAL_SEED = 0x5EED  # fixed: validation batches are identical for every trial


class DataError(ValueError):
    """Bad data setting; the message says how to fix it."""


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


def _builtin(vocab_size: int) -> TokenSource:
    check_source(BUILTIN, vocab_size)
    data = _builtin_bytes()
    cut = int(len(data) * (1 - VAL_FRACTION))
    return TokenSource(BUILTIN, data[:cut], data[cut:], vocab_size)


def _token_files(path: Path, vocab_size: int) -> TokenSource:
    check_source(str(path), vocab_size)
    train, val = (np.memmap(path / n, dtype=np.uint16, mode="r") for n in ("train.bin", "val.bin"))
    return TokenSource(str(path), train, val, vocab_size)


def load_source(data: str, vocab_size: int, seq_len: int = 0) -> TokenSource:
    """Resolve a preset's ``data`` setting; raises DataError naming the fix."""
    source = _builtin(vocab_size) if data == BUILTIN else _token_files(Path(data).expanduser(), vocab_size)
    for split in ("train", "val"):
        if len(getattr(source, split)) <= seq_len + 1:
            raise DataError(f"data: the {split} split of {data!r} is shorter than seq_len + 1 = {seq_len + 1} tokens")
    return source


def check_source(data: str, vocab_size: int | None = None) -> None:
    """Cheap validation for sweep files: the source exists and fits the vocabulary (no reads)."""
    if data == BUILTIN:
        if vocab_size is not None and vocab_size < BYTE_VOCAB:
            raise DataError(f"vocab_size {vocab_size} is too small for the byte-level corpus; set vocab_size = 256")
        return
    path = Path(data).expanduser()
    missing = [n for n in ("train.bin", "val.bin") if not (path / n).is_file()]
    if missing:
        raise DataError(
            f"data: {path} has no {' or '.join(missing)}; point data at a directory with train.bin and "
            f"val.bin (uint16 token files), or use data = '{BUILTIN}'"
        )
    if vocab_size is not None and vocab_size > 1 << 16:
        raise DataError(f"vocab_size {vocab_size} does not fit uint16 token files; use vocab_size <= 65536")


def resolve_data(data: str) -> str:
    """Token-file directories as absolute paths: workers may run in another working directory."""
    return data if data == BUILTIN else str(Path(data).expanduser().resolve())
