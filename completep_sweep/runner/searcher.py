"""A Ray Tune ``Searcher`` over a ``search.Plan``: every search method runs through one Tuner.fit().

Tune asks ``suggest`` for a trial whenever it has room (the concurrency limit wraps this searcher)
and reports each ended trial to ``on_trial_complete``. One fit() serves every round of an adaptive
search: a new fit() per round would cost seconds of actor start-up each, and a barrier across
shapes. ``suggest`` returns None while the plan waits for running trials and FINISHED only when the
plan has nothing left and nothing is running (Tune asks again about once a second meanwhile).
"""

from __future__ import annotations

from ray.tune.search import Searcher

from ..trial import TrialConfig


class PlanSearcher(Searcher):
    def __init__(self, plan):
        super().__init__(metric="row/final_val_loss", mode="min")
        self.plan = plan
        self.live: dict[str, TrialConfig] = {}  # Tune's trial id -> the config it was given

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the plan decides everything; Tune's own search space is only the resources

    def suggest(self, trial_id: str):
        config = self.plan.take()
        if config is None:
            return None if (self.live or not self.plan.finished) else Searcher.FINISHED
        self.live[trial_id] = config
        return {"trial": config.to_dict()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        config = self.live.pop(trial_id, None)
        if config is None:
            return
        if error or not result or "row/status" not in result:
            self.plan.record(config, "error", None)
        else:
            self.plan.record(config, result["row/status"], result.get("row/final_val_loss"))
