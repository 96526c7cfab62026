"""completep-sweep: hyperparameter-transfer sweeps for SP, µP, α=0.5 and CompleteP."""

__version__ = "0.2.0"
