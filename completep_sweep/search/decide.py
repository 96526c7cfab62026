"""``[search] method = "decided"``: a bracket search at the base depth, a short one around its optimum
at every other depth, then seeds only where a verdict is open.

Per line (a parameterization at one width and one value of every other non-depth axis: the shapes
the depth verdicts compare), round by round:
  1. the base depth (the declared ``base_depth`` if swept, else the shallowest) runs the bracket
     rules (bracket.py) from the sweep file's grid with the grid's seeds;
  2. then every other depth starts from three points: the base optimum and one ``resolution`` on
     either side (where the regret of keeping it is read, and where the optimum is if it transfers),
     extending while its best is on an edge, as far as the sweep file's grid reaches (``max_extend``
     past it); a whole coarse grid at every depth would spend most trials far from any optimum;
  3. when the whole line is idle, the analysis reads the line's measurements (the report's own
     analysis, its intervals widened for a look that may stop: Settings.stopping_widening) and
     asks: is the transfer verdict (keep / re-tune) decided, and the depth payoff (helps / hurts /
     flat)?
  4. both decided: the line stops ("decided"). Otherwise each shape gets more seeds at its best point
     and that point's two neighbours (where the payoff and each shape's best loss are read; the
     bracket re-centres when the seed means move the best) and at the base optimum and its
     neighbours (where the regret is read; measured there if not yet, one ``resolution`` apart: the
     base optimum can move after a depth's first search), about half again as many each round, until
     ``max_seeds`` or the line's ``budget`` of trials ("budget spent");
  5. with ``max_depth``, a look that finds the regret at the deepest depth near the tolerance (at least
     ``NEAR`` of it, not firmly above: the answer may change just past the tested depths) adds the next
     doubling instead, a shape of its own that starts like step 2, with the line's seeds; then looks
     again. So does an open stability verdict when the bracket probes the edge (``stability =
     true``): seeds cannot settle it, another depth can.
The rounds are a function of the measured losses only: a killed driver that reads the finished
rows back replays the same rounds and continues where the last one stopped, and each look's verdicts
are kept beside the rows (looks.py), so a driver of a later release, whose analysis may read the same
rows differently, replays them too. Every trial is an ordinary trial, with an ordinary row.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable

import pandas as pd

from ..search_table import deeper_depths
from ..sweep import Sweep
from ..trial import TrialConfig
from . import BracketPlan
from .bracket import EPS, Group
from .looks import Looks

QUESTIONS = ("transfer", "payoff")
"""The verdicts a line must reach before it stops: keeping the base optimum (keep / re-tune) and
whether depth pays (helps / hurts / flat). Stability (``stability = true``) is not waited for with
seeds, which cannot settle it (``_wants_depth``): the bracket probes each depth's edge, and with
``max_depth`` an open stability verdict adds the next doubling."""
FIRST_LOOK = 3
"""Seeds per read point before a look may stop a line. At 2 seeds the noise, pooled over few degrees
of freedom, is often underestimated: in benchmarks/decision_cost.py a look at 2 seeds stopped 1 of 24
simulated studies on a wrong firm transfer verdict, looks from 3 seeds on none."""
DECIDED = {"transfer": ("keep", "re-tune"), "payoff": ("helps", "hurts", "flat")}
KEPT = {q: (*DECIDED[q], "inconclusive") for q in QUESTIONS}
"""What a kept look must say of each question to be replayed (looks.py); anything else is asked again."""
NEAR = 0.5
"""A regret at the deepest depth of at least this fraction of the tolerance, not firmly above it, while
the optimum firmly drifts, is near it: with ``max_depth`` the next doubling is measured, where the
regret grows (about as the square of the optimum's shift) and keeping the base optimum may cost more
than the tolerance. Without a firm drift a regret that size is as likely seed noise, and more seeds are
the cheaper way to decide."""


def verdicts_of(rows: pd.DataFrame, hp: str) -> dict[str, str]:
    """The line's open-or-decided verdicts, from the same analysis `report` runs, its intervals
    widened for a look that may stop the search (``Settings.stopping_widening``); ``deeper`` is
    "wanted" when the regret at the deepest depth is near the tolerance (``NEAR``); ``stability`` is
    the stability verdict (falls / rises / stays / inconclusive), "probe higher" while some depth's
    edge is only bounded from below, or "no edge" while some depth has no stable value."""
    from ..analysis import analyze
    from ..analysis.lines import SETTINGS

    analysis = analyze(rows, settings=SETTINGS.for_stopping())
    t = analysis.transfer
    t = t[t["hp"].eq(hp) & t["axis"].eq("depth")] if len(t) else t
    p = analysis.payoff
    p = p[p["hp"].eq(hp)] if len(p) else p
    e = analysis.stability
    e = e[e["hp"].eq(hp)] if len(e) else e
    # open (inconclusive) only with an interval: a depth with no stable value at all (everything
    # diverged there) is no slope another depth could narrow
    stability = str(e["verdict"].iloc[0]) if len(e) else ""
    if stability == "inconclusive" and not math.isfinite(float(e["slope_low"].iloc[0])):
        stability = "no edge"
    edges = analysis.stability_edges
    bounded = len(edges) and edges[edges["hp"].eq(hp)]["lower_bound"].astype(bool).any()
    near = False
    if len(t):
        row = t.iloc[0]
        tol = float(row["regret_tolerance"])
        moving = row["slope_low"] > 0 or row["slope_high"] < 0  # the optimum drifts, firmly
        near = moving and row["deepest_regret"] >= NEAR * tol and not row["deepest_regret_low"] > tol
    return {
        "transfer": str(t["verdict"].iloc[0]) if len(t) else "inconclusive",
        "payoff": str(p["verdict"].iloc[0]) if len(p) else "inconclusive",
        "deeper": "wanted" if near else "",
        # an edge only bounded from below is settled by probing higher, not by another depth
        "stability": "probe higher" if bounded else stability,
    }


def more_seeds(now: int, most: int) -> int:
    """The next round's seeds per point: about half again as many (2, 3, 4, 6, 9, 13, ...)."""
    return min(most, now + max(1, now // 2))


class DecidedPlan(BracketPlan):
    """BracketPlan whose lines stop when their verdicts are decided (see the module docstring)."""

    def __init__(
        self, sweep: Sweep, done: dict[str, float], judge: Callable | None = None, looks: Looks | None = None
    ):
        search = sweep.spec.search
        self.budget, self.max_seeds, self.max_depth = search.budget, search.max_seeds, search.max_depth
        self.judge = judge or verdicts_of
        self.looks = looks or Looks(None)
        """What earlier looks said, kept beside the rows (looks.py): a replay says the same."""
        self.state: dict[tuple, str] = {}
        """Per line: running, decided, budget spent, or max seeds (the why of a stop)."""
        self.verdicts: dict[tuple, dict[str, str]] = {}
        self.rounds: dict[tuple, int] = {}
        """Per line: the rounds of seeds given so far (0: each shape's first search)."""
        self._lines: dict[tuple, list[tuple]] | None = None
        self._started: set[tuple] = set()
        self.added: dict[tuple, list[int]] = {}
        """Per line: the depths ``max_depth`` let it add past the grid's, in the order added."""
        super().__init__(sweep, done)

    def _starting_rules(self, rules):
        """With a budget, each shape's first search gets its share of the line's budget."""
        if self.budget is None:
            return rules
        share = max(1, self.budget // len(self.sweep.axes["depth"]))
        return dataclasses.replace(rules, max_trials=min(rules.max_trials, share))

    # ------------------------------------------------------------ lines of shapes

    def _line(self, key: tuple) -> tuple:
        """The group key without its depth: the shapes the depth verdicts compare."""
        names = ("parameterization", *sorted(k for k in self.sweep.axes if k not in (self.hp, "seed")))
        return tuple(v for n, v in zip(names, key) if n != "depth")

    def lines(self) -> dict[tuple, list[tuple]]:
        if self._lines is None:
            self._lines = {}
            for key in self.groups:
                self._lines.setdefault(self._line(key), []).append(key)
        return self._lines

    def _idle(self, line: tuple) -> bool:
        keys = self.lines()[line]
        return all(k in self._started and not self.queue[k] and not self.out[k] for k in keys)

    # ------------------------------------------------------------ rounds

    def _base(self, line: tuple) -> tuple:
        """The key of the line's base shape: the declared base depth where it is swept, else the
        shallowest (the analysis' own choice, lines.py)."""
        keys = self.lines()[line]
        declared = [k for k in keys if self.bases[k].depth == self.bases[k].base_depth]
        return declared[0] if declared else min(keys, key=lambda k: self.bases[k].depth)

    def _searched(self, key: tuple) -> bool:
        """The shape's search started and has nothing queued or running."""
        return key in self._started and not self.queue[key] and not self.out[key]

    def _start_near(self, key: tuple, optimum: float | None) -> None:
        """A deeper shape's search starts at the base optimum and one resolution either side, within
        the sweep file's reach (with no base optimum: from the file's grid, as the base did)."""
        rules = self.groups[key].rules
        if optimum is None:
            return
        lo, hi = rules.reach
        step = rules.resolution
        local = tuple(x for x in (optimum - step, optimum, optimum + step) if lo <= x <= hi)
        self.groups[key].rules = dataclasses.replace(rules, grid=local, limits=rules.ends)

    def _advance(self, key: tuple) -> None:
        line = self._line(key)
        base = self._base(line)
        if key != base and key not in self._started:
            if not self._searched(base):
                return  # waits for the base optimum it starts from
            self._start_near(key, self.groups[base].best())
        super()._advance(key)
        self._started.add(key)
        if key == base and self._searched(base):
            for k in self.lines()[line]:
                if k not in self._started:
                    self._advance(k)
        while self.state.get(line, "running") == "running" and self._idle(line) and self._another_round(line):
            for k in self.lines()[line]:
                super()._advance(k)

    def _measured(self, line: tuple) -> list[tuple[TrialConfig, float]]:
        """The line's finished trials and their losses (inf: diverged), in a fixed order, whatever
        order they finished in."""
        return [
            (self._config(key, point), loss)
            for key in self.lines()[line]
            for point, loss in sorted(self.groups[key].measured.items())
            if loss is not None
        ]

    def _rows(self, measured: list[tuple[TrialConfig, float]]) -> pd.DataFrame:
        """Measurements as trial rows (what the analysis reads)."""
        rows = []
        for config, loss in measured:
            finite = math.isfinite(loss)
            status = "ok" if finite else "diverged"
            rows.append(
                {**config.to_dict(), "status": status, "final_val_loss": loss if finite else math.nan}
            )
        return pd.DataFrame(rows)

    def _another_round(self, line: tuple) -> bool:
        """Decide the line, or give its shapes more seeds; False when it stops (``state`` says why)."""
        keys = self.lines()[line]
        measured = self._measured(line)
        rows = self._rows(measured)
        said = dict.fromkeys(QUESTIONS, "")
        if rows["depth"].nunique() >= 2:  # the verdicts a look at these rows said before, else the judge's
            reads = [(config.trial_id, loss) for config, loss in measured]
            said = self.looks.say(self.hp, reads, lambda: self.judge(rows, self.hp), line, KEPT)
        self.verdicts[line] = said
        seeds = self.groups[keys[0]].rules.seeds or len(self.rules.base_seeds)
        looked = seeds >= min(FIRST_LOOK, self.max_seeds)
        spent = sum(len(self.groups[k].measured) for k in keys)
        if looked and self._wants_depth(said) and self._deepen(line, spent):
            return True
        if looked and all(said[q] in DECIDED[q] for q in QUESTIONS):
            self.state[line] = "decided"
            return False
        cut = self.rounds.get(line, 0) > 0 and any(self.groups[k].phase == "capped" for k in keys)
        if self.budget is not None and (spent >= self.budget or cut):  # it cut the last round short
            self.state[line] = "budget spent"
            return False
        if seeds >= self.max_seeds:
            self.state[line] = "max seeds"
            return False
        more = more_seeds(seeds, self.max_seeds)
        self.rounds[line] = self.rounds.get(line, 0) + 1
        self._seed_the_base_optimum(keys)
        room = None if self.budget is None else (self.budget - spent) // len(keys)
        for k in keys:
            group = self.groups[k]
            cap = len(group.measured) + (room if room is not None else 3 * more * 2)
            group.rules = dataclasses.replace(group.rules, seeds=more, max_trials=max(cap, 1))
        return True

    def _wants_depth(self, said: dict[str, str]) -> bool:
        """Another depth is what settles it: the regret at the deepest depth is near the tolerance, or
        (``stability = true``) the edge's slope is open; seeds cannot narrow that, since one depth's
        edge is known to a fixed fraction of an octave (analysis.stability.EDGE_NOISE)."""
        regret = said.get("deeper") == "wanted" and said["transfer"] != "re-tune"
        return regret or (self.rules.stability and said.get("stability") == "inconclusive")

    def _deepen(self, line: tuple, spent: int) -> bool:
        """Add the next doubling of the line's deepest depth (up to ``max_depth``, within the budget):
        three points around the base optimum with the line's seeds, like step 2. False: none to add."""
        keys = self.lines()[line]
        deepest = max(keys, key=lambda k: self.bases[k].depth)
        adds = deeper_depths(self.bases[deepest].depth, self.max_depth)
        rules = self.groups[deepest].rules
        # within a budget only the budget caps it, so a capped added depth means "budget spent"
        room = (
            self.rules.max_trials if self.budget is None else min(self.rules.max_trials, self.budget - spent)
        )
        if not adds or room < 3 * (rules.seeds or len(rules.base_seeds)):
            return False
        config = self.bases[deepest].replace(depth=adds[0])
        key = self._key(config)
        self.groups[key] = Group(dataclasses.replace(rules, max_trials=room))
        self.bases[key], self.queue[key], self.out[key] = config, deque(), 0
        keys.append(key)
        self._start_near(key, self.groups[self._base(line)].best())
        self._started.add(key)
        self.added.setdefault(line, []).append(adds[0])
        return True

    def _seed_the_base_optimum(self, keys: list[tuple]) -> None:
        """The regret at a depth is the loss at the base depth's optimum minus that depth's best: the
        base's best value and a value either side of it get the seeds at every depth too, not only
        each depth's best. At each depth: the tested value within half a ``resolution`` of the base's
        best (else that value, measured there), and its nearest tested neighbours (else one
        ``resolution`` past it, measured there). The regret is read only inside the values a depth
        tested: a depth whose own search stayed below a base optimum that moved up as seeds were
        added would otherwise never measure it (its regret unreadable, its seeds spent for nothing).
        Tested values are reused, never re-measured a rounding error away."""
        base = self.groups[self._base(self._line(keys[0]))].best()
        if base is None:
            return
        step = self.rules.resolution
        for k in keys:
            xs = sorted(self.groups[k].means())
            at = min(xs, key=lambda x: abs(x - base), default=base)
            at = at if abs(at - base) <= step / 2 + EPS else base
            below = [x for x in xs if x < at - EPS][-1:] or [at - step]
            above = [x for x in xs if x > at + EPS][:1] or [at + step]
            self.groups[k].also = (*below, at, *above)

    # ------------------------------------------------------------ what status and run say

    def stops(self) -> dict[tuple, str]:
        """Per line: why it stopped (decided, budget spent, max seeds) or running, with its verdicts."""
        out = {}
        for line in self.lines():
            said = self.verdicts.get(line, {})
            asked = (*QUESTIONS, "stability") if self.rules.stability else QUESTIONS
            text = ", ".join(f"{q} {said[q]}" for q in asked if said.get(q))
            if self.added.get(line):
                text += f"; added depth {', '.join(map(str, self.added[line]))}"
            out[line] = self.state.get(line, "running") + (f" ({text})" if text else "")
        return out

    def reach(self) -> list[tuple[TrialConfig, int]]:
        # every grid depth of each line and every depth max_depth may add, each up to a shape's most
        # (max_seeds at three points and two searches, or the line's whole budget; bounds sums these)
        cap = self.max_seeds * 3 + 2 * self.rules.max_trials if self.budget is None else self.budget
        out = []
        for keys in self.lines().values():
            grid = [self.bases[k] for k in keys if self.bases[k].depth in self.sweep.axes["depth"]]
            deepest = max(grid, key=lambda c: c.depth)
            grid += [deepest.replace(depth=d) for d in deeper_depths(deepest.depth, self.max_depth)]
            out += [(config, cap) for config in grid]
        return out

    def bounds(self) -> tuple[int, int]:
        # fewest: the base depth's grid, three points at every other grid depth, with the grid's seeds
        base_low, _ = self._starting_rules(self.rules).bounds()
        other = min(3 * len(self.rules.base_seeds), self._starting_rules(self.rules).max_trials)
        depths = self.sweep.axes["depth"]
        low = len(self.lines()) * (base_low + (len(depths) - 1) * other)
        if self.budget is None:  # every shape the search can reach, each up to its most
            return low, sum(cap for _, cap in self.reach())
        return low, max(low, self.budget * len(self.lines()))
