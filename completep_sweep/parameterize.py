"""Table 1 for any PyTorch transformer: ``parameterize(model, "completep", width=, depth=, ...)``.

What it does to a model you built (with your own code, at width and depth):
1. places every parameter in a Table 1 group (``layouts.classify``: the layout's name patterns,
   then what the parameter is; an unplaced one is an error naming it and the fix);
2. initialises it: ``init_std=σ`` redraws every matrix of the embedding, hidden and unembedding
   groups from N(0, (σ · init_std_mult)²) and sets norm gains to 1 and biases to 0, as Table 1
   says; ``init_std=None`` keeps your initialisation and multiplies those matrices by the group's
   init_std_mult (1 at the base shape, so nothing changes there);
3. applies the residual-branch multiplier m_L^-α and the output multiplier m_N^-1 in the forward
   pass by forward hooks on the branch modules (attention, MLP) and on the logits' module. Hooks,
   not a wrapper: your model's class, ``state_dict`` names, ``generate`` and checkpoints stay as
   they are, and scaling a branch's output is the same sum h + m·F(LN(h)). No hook is installed
   where a multiplier is exactly 1 (the base shape: bit-identical forward);
4. returns a ``Parameterized`` whose ``param_groups(lr=, weight_decay=, eps=)`` are ready for
   ``torch.optim.AdamW`` (or any optimizer that takes per-group lr, eps, weight_decay), each group
   with its ``lr_scale`` for the schedule helper (``optim.lr_at``, ``optim.set_lr``), and whose
   ``table(...)`` says per tensor the lr, ε, weight decay and init std it got.
The built-in model (model.py) is placed by the same ``classify``: one implementation of Table 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
import torch.nn as nn

from .layouts import BIAS, GAIN, WEIGHT, Layout, block_names, classify, detect
from .optim import lr_at, set_lr  # noqa: F401 - the schedule helper, re-exported for users
from .parameterization import GROUPS, ScalingRules, scaling_rules

NORMAL, ONES, ZEROS = "normal", "ones", "zeros"
INIT: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        # Matrices: normal, std = σ_base × the group's init_std_mult (ScalingRules); hidden weights
        # get m_N^-1/2 under width scaling, the embedding and unembedding keep σ_base.
        ("embedding", WEIGHT): NORMAL,
        ("hidden_weight", WEIGHT): NORMAL,
        ("unembedding", WEIGHT): NORMAL,
        # Project choices (docs/parameterizations.md; the paper is silent): norm gains start at 1
        # and biases at 0, biases of the block linears at 0. No rule scales these.
        ("block_norm", GAIN): ONES,
        ("block_norm", BIAS): ZEROS,
        ("final_norm", GAIN): ONES,
        ("final_norm", BIAS): ZEROS,
        ("hidden_bias", BIAS): ZEROS,
    }
)
"""(group, kind) -> how a parameter starts, for every (group, kind) a transformer has."""


@dataclass
class Parameterized:
    """A model with Table 1 applied: its rules, every tensor's group, and the hooks it runs."""

    model: nn.Module
    rules: ScalingRules
    groups: dict[str, tuple[str, str]]
    """Parameter name -> (group, kind): kind is weight, gain or bias."""
    init_std: float | None
    handles: list = field(default_factory=list, repr=False)

    def param_groups(self, *, lr: float, weight_decay: float = 0.0, eps: float = 1e-8) -> list[dict]:
        """Optimizer param groups, one per Table 1 group present: ``lr`` = base lr × lr_scale (the
        scale kept as ``lr_scale`` for ``set_lr``), ``weight_decay`` and ``eps`` the base values
        times the group's multipliers. Pass them to ``torch.optim.AdamW(groups)``."""
        params = dict(self.model.named_parameters())
        out = []
        for group in GROUPS:
            names = [n for n, (g, _) in self.groups.items() if g == group]
            if not names:
                continue
            rule = self.rules.groups[group]
            out.append(
                {
                    "name": group,
                    "params": [params[n] for n in names],
                    "lr": lr * rule.lr_mult,
                    "lr_scale": rule.lr_mult,
                    "weight_decay": weight_decay * rule.weight_decay_mult,
                    "eps": eps * rule.eps_mult,
                }
            )
        return out

    def table(self, *, lr: float, weight_decay: float = 0.0, eps: float = 1e-8) -> list[dict]:
        """Per tensor: what it got (the answer to "what lr did this tensor actually get")."""
        params = dict(self.model.named_parameters())
        rows = []
        for name, (group, kind) in self.groups.items():
            rule = self.rules.groups[group]
            std = float(params[name].detach().float().std()) if params[name].numel() > 1 else math.nan
            rows.append(
                {
                    "tensor": name,
                    "shape": "x".join(map(str, params[name].shape)),
                    "group": group,
                    "kind": kind,
                    "lr": lr * rule.lr_mult,
                    "eps": eps * rule.eps_mult,
                    "weight_decay": weight_decay * rule.weight_decay_mult,
                    "init_std": std if kind == WEIGHT else math.nan,
                }
            )
        return rows

    def describe(self, *, lr: float, weight_decay: float = 0.0, eps: float = 1e-8) -> str:
        """The per-tensor table as text, headed by the shape and the two multipliers."""
        r = self.rules
        head = (
            f"{r.parameterization} at width {r.width}, depth {r.depth} (base {r.base_width} x "
            f"{r.base_depth}): residual x{r.residual_multiplier:.4g}, output x{r.output_multiplier:.4g}"
        )
        lines = [head, f"{'tensor':<44} {'group':<14} {'lr':>10} {'eps':>10} {'wd':>8} {'init std':>9}"]
        for row in self.table(lr=lr, weight_decay=weight_decay, eps=eps):
            std = "-" if math.isnan(row["init_std"]) else f"{row['init_std']:.4f}"
            lines.append(
                f"{row['tensor']:<44} {row['group']:<14} {row['lr']:>10.3e} {row['eps']:>10.2e} "
                f"{row['weight_decay']:>8.3g} {std:>9}"
            )
        return "\n".join(lines)

    def remove(self) -> None:
        """Remove the forward hooks (the multipliers); weights keep their initialisation."""
        for h in self.handles:
            h.remove()
        self.handles.clear()


def _scale_output(multiplier: float):
    def hook(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            return output * multiplier
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (output[0] * multiplier, *output[1:])  # HF attention returns (output, weights, ...)
        raise TypeError(
            f"cannot scale an output of type {type(output).__name__}; apply the multiplier "
            f"{multiplier:g} in the model's forward instead"
        )

    return hook


def parameterize(
    model: nn.Module,
    parameterization: str,
    *,
    width: int,
    depth: int,
    base_width: int,
    base_depth: int,
    init_std: float | None = 0.02,
    layout: Layout | str | None = None,
    roles: Mapping[str, str] | None = None,
    generator: torch.Generator | None = None,
) -> Parameterized:
    """Apply ``parameterization`` (sp, mup, alpha0.5, completep, alphaX) to ``model`` at (width,
    depth) for a base shape: see the module docstring. ``layout``: a ``Layout``, a name in
    ``layouts.LAYOUTS``, or None to detect it; ``roles``: parameter-name glob -> group overrides."""
    rules = scaling_rules(
        parameterization, width=width, depth=depth, base_width=base_width, base_depth=base_depth
    )
    if isinstance(layout, str):
        from .layouts import LAYOUTS

        if layout not in LAYOUTS:
            raise ValueError(f"layout {layout!r} is not known; use one of {', '.join(LAYOUTS)} or a Layout")
        layout = LAYOUTS[layout]
    layout = layout or detect(model)
    blocks = block_names(model, layout)
    if len(blocks) != depth:
        raise ValueError(
            f"depth={depth} but the model has {len(blocks)} blocks matching {layout.blocks!r}; pass the "
            "model's own depth (its number of residual blocks)"
        )
    groups = classify(model, layout, roles)
    initialise(model, rules, groups, init_std, generator)
    out = Parameterized(model, rules, groups, init_std)
    modules = dict(model.named_modules())
    if rules.residual_multiplier != 1.0:
        for block in blocks:
            found = [n for n in modules if n.startswith(block + ".") and _is_branch(n, block, layout)]
            if len(found) != len(layout.branches):
                raise ValueError(
                    f"block {block} has branches {found or 'none'}, expected {list(layout.branches)}; "
                    "fix layout.branches"
                )
            for name in found:
                out.handles.append(
                    modules[name].register_forward_hook(_scale_output(rules.residual_multiplier))
                )
    if rules.output_multiplier != 1.0:
        if layout.output not in modules:
            raise ValueError(f"no module {layout.output!r} for the logits; fix layout.output")
        out.handles.append(
            modules[layout.output].register_forward_hook(_scale_output(rules.output_multiplier))
        )
    return out


def _is_branch(name: str, block: str, layout: Layout) -> bool:
    from fnmatch import fnmatchcase

    return any(fnmatchcase(name, f"{block}.{b}") for b in layout.branches)


@torch.no_grad()
def initialise(model: nn.Module, rules: ScalingRules, groups, init_std: float | None, generator=None) -> None:
    """Each parameter as ``INIT[(group, kind)]`` says; normal draws have std σ_base × init_std_mult
    (``init_std=None``: the model's own init, matrices rescaled by init_std_mult).

    Parameters are visited group by group in ``GROUPS`` order, then in module order: that is the
    order of the random draws, so it fixes every initial weight for a seed (do not reorder)."""
    params = dict(model.named_parameters())
    for group in GROUPS:
        mult = rules.groups[group].init_std_mult
        for name, (g, kind) in groups.items():
            if g != group:
                continue
            rule, p = INIT.get((group, kind)), params[name]
            if rule is None:
                raise ValueError(
                    f"parameter {name!r} ({group}, {kind}) has no init rule; place it in another group "
                    "(roles=) or add one to parameterize.INIT"
                )
            if rule == NORMAL and mult is None:
                raise ValueError(f"parameter {name!r}: group {group} has no init_std_mult in the rules")
            if init_std is None:
                if rule == NORMAL and mult != 1.0:
                    p.mul_(mult)  # your own init, rescaled as Table 1 scales σ
            elif rule == NORMAL:
                nn.init.normal_(p, mean=0.0, std=init_std * mult, generator=generator)
            elif rule == ONES:
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)
