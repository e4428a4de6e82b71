"""Every ``magneto ...`` command line shown in README.md or docs/ parses with the real parser,
and the generated command-line reference has every subcommand: the docs cannot drift from
``--help``."""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import shlex
from pathlib import Path

import pytest

from magneto.cli.main import build_parser
from tests.import_graph import ROOT

SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell|console)\s*\n(.*?)^```", re.M | re.S)
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")"}


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def shell_lines(text: str) -> list[str]:
    """The logical lines of a document's shell blocks (backslash continuations joined)."""
    lines: list[str] = []
    for block in SHELL_BLOCK.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [re.sub(r"^\$ ", "", line.strip()) for line in joined.splitlines()]
    return [line for line in lines if line]


SHELL_VALUE = re.compile(r"\$\(\([^)]*\)\)|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


def magneto_commands(line: str) -> list[list[str]]:
    """Each ``magneto`` invocation in a shell line, as the arguments after the program name;
    a shell variable or arithmetic (``$SLURM_ARRAY_TASK_ID``, ``$((I + 1))``) stands for 1."""
    line = SHELL_VALUE.sub("1", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    found, current = [], None
    for i, token in enumerate(tokens):
        if token in SEPARATORS:
            if current is not None:
                found.append(current)
            current = None
        elif current is not None:
            current.append(token)
        elif (
            token == "magneto"
            or token.endswith("/magneto")
            or (token == "magneto.cli.main" and i and tokens[i - 1] == "-m")
        ):
            current = []
    if current is not None:
        found.append(current)
    return found


def documented_commands() -> list[tuple[str, list[str]]]:
    out = []
    for path in doc_files():
        for line in shell_lines(path.read_text()):
            for argv in magneto_commands(line):
                out.append((f"{path.relative_to(ROOT)}: magneto {shlex.join(argv)}", argv))
    return out


def parse_status(argv: list[str]) -> tuple[int, str]:
    """The exit status argparse would give ``argv`` (0: parsed), and what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0), printed.getvalue()
    return 0, printed.getvalue()


COMMANDS = documented_commands()


def test_the_docs_show_the_main_commands():
    shown = {argv[0] for _, argv in COMMANDS if argv}
    assert {"quickstart", "train", "pretrain", "evaluate", "predict", "serve"} <= shown
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_documented_command_parses(where, argv):
    status, printed = parse_status(argv)
    assert status == 0, f"{where}\n{printed}"


@pytest.mark.parametrize(
    "line",
    [
        "magneto trian --data d --out o",
        "magneto train --data d --out o --no-such-flag 1",
        ".venv/bin/magneto evaluate --checkpoint c.ckpt",
        "python -m magneto.cli.main predict --checkpoint c --tags a --top-k 0",
    ],
)
def test_the_check_catches_wrong_commands(line):
    (argv,) = magneto_commands(line)
    assert parse_status(argv)[0] == 2


def test_shell_values_stand_for_a_number():
    (argv,) = magneto_commands('magneto summarize --shard "$((JOB_COMPLETION_INDEX + 1))/$N"')
    assert argv == ["summarize", "--shard", "1/1"]


def test_commands_are_found_behind_continuations_and_separators():
    text = (
        "```bash\nmagneto train --data d \\\n   --out o && .venv/bin/magneto predict -h  # x\n```\n"
    )
    assert [magneto_commands(line) for line in shell_lines(text)] == [
        [["train", "--data", "d", "--out", "o"], ["predict", "-h"]]
    ]


def _subcommands(parser, prefix="magneto"):
    """Every command path, walking argparse's sub-parsers directly."""
    paths = [prefix]
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):  # sub-parsers; other choices are plain value lists
            for name, sub in choices.items():
                paths += _subcommands(sub, f"{prefix} {name}")
    return paths


def test_the_generated_reference_has_every_subcommand_and_its_help():
    generator = runpy.run_path(str(ROOT / "docs" / "gen_reference.py"), run_name="test")
    page = generator["cli_markdown"]()
    parsers = dict(generator["commands"]())
    for path in _subcommands(build_parser()):
        assert f"## `{path}`" in page, path
        assert parsers[path].format_help().rstrip() in page, path
    assert "magneto train" in parsers and "magneto embeddings train" in parsers
