"""The sweep driver's progress line (no Ray cluster needed)."""


def test_progress_eta_weighs_trials_by_flops():
    import io
    import time

    from completep_sweep.runner import Progress

    p = Progress(total=4, done_before=0, flops_pending=100.0, stream=io.StringIO())
    assert "ETA -" in p.line()
    p.first_trial = time.monotonic() - 10.0  # 10 s of work done 10% of the FLOPs
    p.finish("ok", 10.0)
    eta = p.line().split("ETA ")[1]
    assert eta.startswith("1m3") or eta.startswith("1m2")  # about 90 s left, not 3 trials x 10 s
    p.finish("diverged", 90.0)
    p.finish("error", 0.0)
    assert "2 ok" not in p.line() and "1 diverged, 1 error" in p.line()
