"""Examples a user copies: a HuggingFace model parameterized by ``completep_sweep.parameterize``."""
