"""Everything that touches Ray: the only package that imports it.

- ``sweep``: the Tune controller (workers compute, a driver-side callback writes every row).
- ``data_parallel``: a trial of ``workers_per_trial`` > 1 as a Ray Train job inside its Tune trial.
- ``cluster``: connecting to Ray, checking an address, the machine's or cluster's resources.
- ``jobs``: submitting the same ``run`` command to a cluster as a Ray Job.

Submodules are imported by name (``from .runner.sweep import run_sweep``): importing this package
alone does not import Ray, so ``jobs`` can set Ray's auth mode before Ray reads it.
"""

import os

# Before anything imports Ray, which reads these once.
# Tune's per-trial JSON/CSV/TensorBoard loggers cost time and disk and duplicate our Parquet rows.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "16")
# The progress line is the sweep's console output; Tune's tables and banners would bury it.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Stop signals are ours (interrupt.py): Tune's own SIGINT handler would end the run as if it finished.
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
# Trials read data by the path the driver validated; Tune's per-trial chdir would break relative ones.
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
# A trial reports its evaluations as it goes (the live view of `status --watch`) and its row once,
# at the end; the searchers read only the final report, so the metric is absent from the others.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
