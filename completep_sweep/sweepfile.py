"""The sweep file's tables as pydantic models: what each key means and accepts.

Unknown keys are refused everywhere (a typo never silently falls back to a default). The grid's
axes are checked against the trial schema by sweep.py, which also expands the file into trials.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from .parameterization import get_parameterization

# Matched whole (fullmatch): "$" alone would also match before a final newline ("odd\n").
_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
MAX_NAME_LENGTH = 100
"""Longest sweep name, in characters (= UTF-8 bytes: names are ASCII). The name is a folder under
results/ and in mlartifacts/, and the root of longer names: the Ray Job's driver log
``job-driver-completep-<name>-<spec hash>-<attempt>.log`` (45 bytes more), the staged file
``.submit/<name>-<spec hash>.toml``, the MLflow run ``<name> (sweep)``. 100 keeps every one of them
well inside NAME_MAX (255 bytes on ext4, xfs, btrfs, APFS) and MLflow's 250-character run names."""
MLFLOW_DB = "mlflow.db"
"""The local MLflow store (SQLite) in the results root, beside the sweep folders."""
RESERVED_NAMES = frozenset(
    {
        MLFLOW_DB,
        *(MLFLOW_DB + side for side in ("-journal", "-wal", "-shm")),  # SQLite's files beside it
        "mlartifacts",  # the local store's artifacts (mlflow server --artifacts-destination)
        "mlruns",  # MLflow's default store and artifact root when it is started in results/
        "README.md",  # the note that ships in results/
    }
)
"""Every file and folder the results root holds beside the sweep folders: a sweep of that name
would write into it (and break the shared MLflow store for every sweep). Hidden names (.*) are
refused by the name rule. Compared case-insensitively: macOS and Windows file systems are."""
_RESERVED_FOLDED = frozenset(n.casefold() for n in RESERVED_NAMES)
MAX_EXPONENT = 64
"""Powers of two in log2_range and around stay within 2^-64 .. 2^64: far past any HP, well inside
a float (beyond 2^1023 the values overflow)."""
MAX_AXIS_VALUES = 10_000
"""Most values one log2_range or around axis may give."""


def _check_exponents(low: float, high: float, what: str) -> None:
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"{what} must be finite numbers (got [{low:g}, {high:g}])")
    if max(abs(low), abs(high)) > MAX_EXPONENT:
        raise ValueError(
            f"{what} [{low:g}, {high:g}] reaches past 2^±{MAX_EXPONENT}; "
            f"keep the exponents within [-{MAX_EXPONENT}, {MAX_EXPONENT}]"
        )


def _count(span: float, step: float, what: str) -> int:
    """Values every ``step`` over ``span`` octaves, refused before any is made when too many."""
    steps = span / step
    if steps >= MAX_AXIS_VALUES:
        raise ValueError(
            f"{what} with step {step:g} gives over {MAX_AXIS_VALUES:,} values; use a larger step"
        )
    return int(math.floor(steps + 1e-9)) + 1


class Log2Range(BaseModel):
    """Powers of two 2^lo … 2^hi inclusive, every ``step`` octaves."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    log2_range: tuple[float, float]
    step: float = Field(default=1.0, gt=0)

    def values(self) -> list[float]:
        lo, hi = self.log2_range
        _check_exponents(lo, hi, "log2_range")
        if hi < lo:
            raise ValueError(f"log2_range [{lo:g}, {hi:g}] must be [low, high] with low <= high")
        n = _count(hi - lo, self.step, "log2_range")
        return [2.0 ** (lo + i * self.step) for i in range(n)]


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cpus_per_trial: float = Field(
        default=1, gt=0, description="CPUs per trial, per worker (torch threads on CPU)"
    )
    gpus_per_trial: float = Field(
        default=0, ge=0, description="GPUs per trial, per worker; fractional shares a GPU"
    )
    workers_per_trial: int = Field(
        default=1,
        ge=1,
        description="data-parallel workers per trial (a Ray Train job; each takes an equal slice "
        "of every batch); 1 runs the trial as one process",
    )
    max_concurrent: int | None = Field(default=None, ge=1, description="at most this many trials at once")
    max_retries: int = Field(default=2, ge=0, description="re-runs of a trial whose worker died or raised")
    autoscale_wait_s: float = Field(
        default=0,
        ge=0,
        description="on an autoscaling cluster: seconds to wait for "
        "a node that fits a trial before giving up (0: refuse at once)",
    )


class Around(BaseModel):
    """Values centred on another sweep's best value: 2^(c + k·step) for |k·step| <= octaves, where c
    is log2 of that sweep's best value rounded to the step (values stay on the 2^(k·step) lattice)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    around: str = Field(description="the other sweep's name (its results folder under --results)")
    octaves: float = 2.0
    step: float = Field(default=0.5, gt=0)

    # Checked on reading, before the other sweep is looked up: a bad width is wrong at any centre.
    @field_validator("octaves")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not 0 < v <= MAX_EXPONENT:  # also false for nan
            raise ValueError(f"octaves = {v:g}; use a number of octaves above 0 and at most {MAX_EXPONENT}")
        return v

    @model_validator(mode="after")
    def _not_too_many(self) -> Around:
        _count(self.octaves, self.step, "around")
        return self

    def values(self, best: float) -> list[float]:
        n = _count(self.octaves, self.step, "around") - 1
        centre = round(math.log2(best) / self.step) * self.step
        _check_exponents(centre - n * self.step, centre + n * self.step, f"around {self.around!r}: exponents")
        return [2.0 ** (centre + k * self.step) for k in range(-n, n + 1)]


METHOD_KEYS = {
    "grid": set(),
    "bracket": {"hp", "resolution", "max_extend", "seeds", "max_trials_per_shape", "stability"},
    "optuna": {"n_trials", "sampler_seed"},
}
METHOD_KEYS["decided"] = METHOD_KEYS["bracket"] | {"budget", "max_seeds", "max_depth"}


class Search(BaseModel):
    """``[search]``: how the trials are chosen. Absent means method = "grid" (every grid point)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["grid", "bracket", "decided", "optuna"] = "grid"
    hp: str = Field(default="lr", description="bracket: the HP searched in log2 space")
    resolution: float = Field(default=0.5, gt=0, description="bracket: octaves between neighbours at the end")
    max_extend: float = Field(
        default=3.0, ge=0, description="bracket: octaves it may go past the grid's edges"
    )
    seeds: int | None = Field(
        default=None, ge=1, description="bracket: seeds at the best point and its neighbours"
    )
    max_trials_per_shape: int = Field(
        default=40, ge=1, description="bracket: at most this many trials per group"
    )
    stability: bool = Field(
        default=False,
        description="bracket: also locate the largest stable value above the best, to the resolution",
    )
    budget: int | None = Field(
        default=None, ge=1, description="decided: at most this many trials per parameterization's depths"
    )
    max_seeds: int = Field(default=12, ge=1, description="decided: at most this many seeds per point")
    max_depth: StrictInt | None = Field(
        default=None,
        ge=1,
        description="decided: the deepest depth it may add, doubling the deepest while the regret there "
        "nears the tolerance (None: the grid's depths only)",
    )
    n_trials: int | None = Field(default=None, ge=1, description="optuna: trials in the study, across runs")
    sampler_seed: int = Field(default=0, ge=0, description="optuna: seeds the TPE sampler")

    @model_validator(mode="after")
    def _keys_of_the_method(self) -> Search:
        for key in self.model_fields_set - {"method"} - METHOD_KEYS[self.method]:
            owner = next(m for m, keys in METHOD_KEYS.items() if key in keys)
            raise ValueError(f'{key} is a setting of method = "{owner}", not "{self.method}"; remove it')
        if self.method == "optuna" and self.n_trials is None:
            raise ValueError(
                'method = "optuna" needs n_trials (how many trials the study runs), e.g. n_trials = 40'
            )
        return self


class SweepSpec(BaseModel):
    """A sweep file. Unknown keys are refused, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    model: str = "tiny"
    description: str = ""
    parameterizations: list[str] = Field(min_length=1)
    trainer: str | None = Field(default=None, description='your training function, "pkg.module:func"')
    command: list[str] | None = Field(
        default=None, description='your training script, e.g. ["python", "train.py", "--lr={lr}"]'
    )
    grid: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    model_overrides: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    search: Search = Field(default_factory=lambda: Search())

    def settings(self) -> dict[str, str]:
        """What the file sets, flat: grid.lr, train.steps, model, parameterizations (as text)."""
        out = {}
        for key, value in self.model_dump(exclude_unset=True, exclude={"name", "description"}).items():
            if isinstance(value, dict):
                out.update(
                    {f"{key}.{k}": v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
                )
            else:
                out[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        return out

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        """The name is a folder beside others in results/: checked whole, as the file system sees it."""
        if not _NAME_RE.fullmatch(v):
            raise ValueError(f"{v!r}: use letters, digits, '.', '_' and '-' only (it names results/<name>/)")
        if v.startswith((".", "-")):
            raise ValueError(
                f"{v!r} starts with {v[0]!r} (a hidden file or an option); start with a letter or digit"
            )
        if len(v) > MAX_NAME_LENGTH:
            raise ValueError(
                f"{len(v)} characters is too long for a folder name; use at most {MAX_NAME_LENGTH}"
            )
        if v.casefold() in _RESERVED_FOLDED:
            raise ValueError(
                f"{v!r} is reserved: results/ holds a file or folder of that name beside the sweeps "
                "(the shared MLflow store, its files, README.md); pick another name"
            )
        return v

    @field_validator("parameterizations")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        names = [get_parameterization(p).name for p in v]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate entries in {v}")
        return names
