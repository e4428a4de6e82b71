"""``--help`` says what each flag takes, its default, which stage owns it, and the exit codes."""

from __future__ import annotations

import re

import pytest

from magneto.cli.config_flags import STAGE_ONLY, _fields, flag_name
from magneto.cli.main import build_parser, main
from magneto.config import RunConfig
from magneto.train.loss_registry import LOSSES


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one line per flag, whatever the terminal


def help_of(*command: str, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def option_lines(text: str) -> dict[str, str]:
    """``--flag`` -> its entry (the flag and its help, continuation lines joined)."""
    body = text.split("\n\n", 1)[1]  # past the usage block
    out: dict[str, str] = {}
    current = None
    for line in body.splitlines():
        match = re.match(r"\s+(-\w, )?(--[\w-]+)", line)
        if match:
            current = match.group(2)
            out[current] = line.strip()
        elif current and line.startswith(" " * 10):
            out[current] += " " + line.strip()
        else:
            current = None
    return out


def test_top_level_help_documents_the_exit_codes(capsys):
    text = help_of(capsys=capsys)
    assert "exit status:" in text
    assert re.search(r"^\s+1\s+the command failed while running", text, re.M)
    assert re.search(r"^\s+2\s+usage error: an unknown flag, a bad flag value", text, re.M)


def test_loss_flags_list_their_choices(capsys):
    lines = option_lines(help_of("train", capsys=capsys))
    for flag in ("--loss", "--aux-loss"):
        assert "{" + ",".join(LOSSES) + "}" in lines[flag]
    assert "[default: bce_dice]" in lines["--loss"]


def test_pretrain_sources_shows_its_comma_form_and_a_readable_default(capsys):
    line = option_lines(help_of("pretrain", capsys=capsys))["--pretrain-sources"]
    assert "--pretrain-sources {unlabeled,train},..." in line
    assert "(comma-separated) [default: unlabeled,train]" in line
    assert "[" + "'" not in line  # no Python list repr


def test_booleans_show_their_default_as_the_flag_to_type(capsys):
    lines = option_lines(help_of("train", capsys=capsys))
    assert "[default: --augment-images]" in lines["--augment-images"]
    assert "[default: --no-feature-cache]" in lines["--feature-cache"]
    assert "[default: None]" not in help_of("train", capsys=capsys)


@pytest.mark.parametrize(("stage", "other"), [("train", "pretrain"), ("pretrain", "train")])
def test_stage_flags_appear_only_on_their_stage(stage, other, capsys):
    listed = option_lines(help_of(stage, capsys=capsys))
    for dotted, owner in STAGE_ONLY.items():
        assert (flag_name(dotted) in listed) == (owner == stage), dotted
    shared = [d for d, _ in _fields(RunConfig) if d not in STAGE_ONLY]
    assert all(flag_name(d) in listed for d in shared)


def test_stage_only_names_real_fields():
    assert set(STAGE_ONLY) <= {d for d, _ in _fields(RunConfig)}
    assert set(STAGE_ONLY.values()) == {"train", "pretrain"}


@pytest.mark.parametrize("command", ["evaluate", "predict", "summarize", "serve"])
def test_scoring_commands_explain_every_flag_and_show_defaults(command, capsys):
    lines = option_lines(help_of(command, capsys=capsys))
    for flag, line in lines.items():
        text = re.sub(r"^(-\w, )?--[\w-]+( \S+)?", "", line).strip()
        assert text, f"{command} {flag} has no help text"
    assert "default: auto]" in lines["--device"]  # serve: [env MAGNETO_DEVICE; default: auto]
    if command in ("evaluate", "summarize"):
        assert "[default: 64]" in lines["--batch-size"]


def test_every_command_has_help_and_errors_name_it(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse's own table
    for name in commands:
        argv = [name, "nuswide"] if name == "prepare" else [name]
        assert help_of(*argv, capsys=capsys).startswith(f"usage: magneto {' '.join(argv)}")
        with pytest.raises(SystemExit) as info:
            main([*argv, "--no-such-flag"])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"magneto {' '.join(argv)}: error: ") and "\n" not in err


HEAVY = ("torch", "torchvision", "albumentations", "cv2", "gensim", "fastapi", "uvicorn", "ray")


def test_building_the_parser_imports_no_heavy_library():
    """``magneto --help`` stays fast: the parser needs pydantic configs, never torch & co."""
    import subprocess
    import sys

    code = (
        "import sys; from magneto.cli.main import build_parser; build_parser(); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_export_formats_named_for_help_are_the_exporters():
    from magneto.cli.export_command import EXPORT_FORMATS
    from magneto.infer.export import FORMATS

    assert tuple(EXPORT_FORMATS) == tuple(FORMATS)


METAVARS = {"N", "FLOAT", "FILE", "DIR", "DEVICE", "JSON", "HOST", "KEY", "ADDRESS", "I/N"}
METAVARS |= {"TAG,...", "ITEM,...", "INPUT", "URI", "NAME", "PATH"}


def every_parser():
    import runpy
    from pathlib import Path

    generator = Path(__file__).resolve().parents[2] / "docs" / "gen_reference.py"
    return list(runpy.run_path(str(generator), run_name="test")["commands"]())


def _shown(action) -> bool:
    import argparse

    skip = (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)
    return action.help != argparse.SUPPRESS and not isinstance(action, skip)


def test_every_flag_of_every_command_has_help_and_says_what_it_takes():
    import argparse

    problems = []
    for path, parser in every_parser():
        text = parser.format_help()
        assert "-v, --verbose" in text, f"{path}: the global -v is accepted after it too"
        for action in filter(_shown, parser._actions):
            name = f"{path} {'/'.join(action.option_strings) or action.dest}"
            if not (action.help or "").strip():
                problems.append(f"{name}: no help")
            if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
                continue  # a switch (--json, --no-aux)
            metavar = action.metavar
            if action.choices is not None and not isinstance(action.choices, dict):
                listed = "{" + ",".join(map(str, action.choices)) + "}"
                if metavar is not None or listed not in text:
                    problems.append(f"{name}: its choices are not listed")
            elif metavar is None or not (metavar in METAVARS or str(metavar).startswith("{")):
                problems.append(f"{name}: metavar {metavar!r}")
    assert problems == []


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--checkpoint", "x.ckpt", "--log-level", "banana"],
        ["serve", "--checkpoint", "x.ckpt", "--metrics-require-key", "true"],
        ["train", "--data", "d", "--out", "o", "--aux", "yes"],
    ],
)
def test_choices_and_switches_are_usage_errors_when_misused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_verbose_flag_works_before_and_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["-v", "synth", "--out", "o"]).verbose is True
    assert parser.parse_args(["synth", "--out", "o", "-v"]).verbose is True
    assert parser.parse_args(["synth", "--out", "o"]).verbose is False
