"""``completep-sweep check``, the transfer gate: the correct HuggingFace GPT-2 factory
(examples/hf_gpt2.py) passes every check; each classic bug planted in it (tests/planted_models.py)
fails the check of its group; bad input exits 2 naming the option."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("transformers")  # the [hf] extra, installed by `make test`
import planted_models  # noqa: E402  (a helper module, not a test module; puts examples/ on the path)


def check_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("PASS ", "FAIL "))]


def failed(out: str) -> list[str]:
    return [line.split(":")[0].removeprefix("FAIL ") for line in check_lines(out) if line.startswith("FAIL")]


@pytest.mark.parametrize("parameterization", ["sp", "mup", "alpha0.5", "completep"])
def test_the_correct_factory_passes_the_checks_at_init_under_every_parameterization(cli, parameterization):
    code, out, _ = cli(
        "check", "--model", "examples.hf_gpt2:build", "--parameterization", parameterization, "--static-only"
    )
    assert code == 0, out
    names = [line.split(":")[0][5:] for line in check_lines(out)]
    assert names == [
        "static embedding", "static block_norm", "static hidden_weight", "static hidden_bias",
        "static final_norm", "residual multiplier", "output multiplier",
    ]  # fmt: skip
    assert "7 of 7 checks passed" in out


@pytest.mark.parametrize("bug", planted_models.PLANTED)
def test_each_planted_bug_fails_the_check_that_names_its_group(cli, bug):
    code, out, _ = cli("check", "--model", f"planted_models:{bug}", "--static-only")
    assert code == 1
    assert failed(out) == [planted_models.PLANTED[bug]], out


def test_the_failure_says_expected_against_measured(cli):
    _, out, _ = cli("check", "--model", "planted_models:block_eps_unscaled", "--static-only")
    line = next(line for line in check_lines(out) if line.startswith("FAIL"))
    assert "eps x1 (Table 1: x0.5) at 64x2, transformer.h.0.ln_1.weight" in line
    assert "eps x1 (Table 1: x0.25) at 32x8" in line
    _, out, _ = cli("check", "--model", "planted_models:no_residual_multiplier", "--static-only")
    assert "FAIL residual multiplier: block increment at init, depth 8 over 2, x1" in out
    assert "(expected m_L^-alpha = x0.25)" in out


def test_the_junit_file_has_one_testcase_per_check_line(cli, tmp_path):
    junit = tmp_path / "check.xml"
    code, out, _ = cli(
        "check", "--model", "planted_models:embedding_lr_scaled", "--static-only", "--junit", junit
    )
    assert code == 1
    suite = ET.parse(junit).getroot()
    cases = suite.findall("testcase")
    lines = check_lines(out)
    assert [c.get("name") for c in cases] == [line.split(":")[0][5:] for line in lines]
    assert suite.get("tests") == str(len(lines)) and suite.get("failures") == "1"
    assert [c.get("name") for c in cases if c.find("failure") is not None] == ["static embedding"]
    assert "lr x0.5 (Table 1: x1)" in cases[0].find("failure").get("message")


def test_a_factory_that_fails_at_another_shape_fails_the_gate_with_the_reason(cli, tmp_path):
    junit = tmp_path / "check.xml"
    code, out, _ = cli("check", "--model", "planted_models:fails_when_wide", "--junit", junit)
    assert code == 1 and "FAIL check stopped: ValueError: width 64 is not supported" in out
    assert [c.get("name") for c in ET.parse(junit).getroot().findall("testcase")] == ["check stopped"]


def test_the_builtin_model_passes_the_checks_at_init(cli):
    code, out, _ = cli("check", "--model", "builtin", "--static-only")
    assert code == 0, out
    assert "PASS static unembedding" in out  # untied: its own group


def test_a_roles_file_places_what_the_layout_does_not(cli, tmp_path):
    code, _, err = cli("check", "--model", "planted_models:gated", "--static-only")
    assert code == 2 and "--roles" in err and "transformer.h.0.gate" in err
    toml = tmp_path / "roles.toml"
    toml.write_text('"transformer.h.*.gate" = "hidden_bias"\n')
    code, out, _ = cli("check", "--model", "planted_models:gated", "--static-only", "--roles", toml)
    assert code == 0, out
    layout = {
        "blocks": "transformer.h.*", "branches": ["attn", "mlp"],
        "embedding": ["transformer.wte.*", "transformer.wpe.*"], "final_norm": "transformer.ln_f.*",
        "unembedding": ["lm_head.*"], "output": "lm_head",
    }  # fmt: skip
    spec = tmp_path / "roles.json"
    spec.write_text(json.dumps({"roles": planted_models.GATE_ROLES, "layout": layout}))
    code, out, _ = cli("check", "--model", "planted_models:gated", "--static-only", "--roles", spec)
    assert code == 0, out
    toml.write_text(toml.read_text() + '[layout]\nname = "mine"\n' + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in layout.items()
    ))  # fmt: skip
    code, out, _ = cli("check", "--model", "planted_models:gated", "--static-only", "--roles", toml)
    assert code == 0, out


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--model", "no_such_module_anywhere:build"], "--model: cannot import 'no_such_module_anywhere'"),
        (["--model", "planted_models"], "is not pkg.module:function"),
        (["--model", "planted_models:nothing"], "module planted_models has no 'nothing'"),
        (["--model", "planted_models:PLANTED"], "is a dict, not a function"),
        (["--model", "planted_models:_group"], "it must be build(parameterization, width, depth"),
        (["--model", "planted_models:model_only"], "returned (GPT2LMHeadModel); return (model, optimizer)"),
        (["--model", "builtin", "--roles", "{roles}"], "--roles: "),
        (["--model", "builtin", "--roles", "{bad_group}"], "'ln_*' = 'norm' is not a group"),
        (["--model", "builtin", "--roles", "{missing}"], "--roles: cannot read"),
        (["--model", "builtin", "--roles", "{bad_layout}"], "[layout] needs blocks"),
    ],
)
def test_bad_input_exits_2_before_any_check_naming_the_option(cli, tmp_path, argv, says):
    files = {
        "roles": "[roles\n",
        "bad_group": '"ln_*" = "norm"\n',
        "bad_layout": '[layout]\nblocks = "h.*"\n',
    }
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(text)
    argv = [a.format(**{k: tmp_path / f"{k}.toml" for k in [*files, "missing"]}) for a in argv]
    code, out, err = cli("check", *argv)
    assert code == 2 and says in err, err
    assert "error: --model" in err or "error: --roles" in err
    assert not check_lines(out)


@pytest.mark.slow
def test_the_correct_factory_passes_every_check_and_a_planted_bug_fails_the_dynamic_ones_too(cli, tmp_path):
    junit = tmp_path / "check.xml"
    code, out, _ = cli("check", "--model", "examples.hf_gpt2:build", "--junit", junit)
    assert code == 0, out
    names = [line.split(":")[0][5:] for line in check_lines(out)]
    assert names[-4:] == ["width coord check", "depth coord check", "laziness", "lr bracket"]
    assert len(ET.parse(junit).getroot().findall("testcase")) == len(names) == 11
    code, out, _ = cli("check", "--model", "planted_models:no_residual_multiplier")
    assert code == 1 and {"residual multiplier", "depth coord check"} <= set(failed(out)), out
    assert not [name for name in failed(out) if name.startswith("static")]
