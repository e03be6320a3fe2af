"""The README is true to the CLI: every command and flag it shows exists in that command's --help,
and every command's --help works."""

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from imgsearch.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
# a flag starts a word: `ViT-B-32` and `in-place` hold none
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
CHOICES = re.compile(r"(--[\w-]+) (\w+(?:\|\w+)+)")  # `--precision auto|fp32|int8`


def shown(prefix: str) -> list[str]:
    """Every command line the README shows that starts with prefix: lines of its code blocks
    (comments cut) and its inline code spans, whitespace folded."""
    lines = [line.split("#")[0] for block in FENCED.findall(README) for line in block.splitlines()]
    lines += INLINE.findall(FENCED.sub("", README))  # a span may wrap onto the next line
    return list(dict.fromkeys(" ".join(line.split()) for line in lines if line.strip().startswith(prefix)))


def every_command(group: click.Group = cli, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from every_command(command, (*path, name))


def help_text(path) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="imgsearch")
    assert result.exit_code == 0, result.output
    return result.output


def resolve(line: str) -> tuple[list[str], click.Command, list[str]]:
    """`imgsearch bench query --n 10` -> (["bench", "query"], that command, ["--n", "10"])."""
    words, path, command = line.split()[1:], [], cli
    while isinstance(command, click.Group):
        assert words and words[0] in command.commands, f"README shows an unknown command: {line}"
        path.append(words.pop(0))
        command = command.commands[path[-1]]
    return path, command, words


README_COMMANDS = shown("imgsearch ")


def test_the_readme_shows_commands():
    # guards the parsing below: if it found nothing, every other test here would pass on nothing
    assert len(README_COMMANDS) >= 10
    assert "imgsearch check [--repair] [--json]" in README_COMMANDS
    assert "imgsearch eval --dataset tuxpaint --model offline --precision fp32 --precision int8" in README_COMMANDS


@pytest.mark.parametrize("line", README_COMMANDS)
def test_every_command_and_flag_the_readme_shows_is_in_its_help(line):
    path, command, words = resolve(line)
    text = help_text(path)
    for flag in FLAG.findall(" ".join(words)):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text), f"{flag} not in `imgsearch {' '.join(path)} --help`"
    options = {opt: param for param in command.params for opt in param.opts}
    for flag, values in CHOICES.findall(" ".join(words)):
        assert set(values.split("|")) <= set(options[flag].type.choices), f"{line}: {values}"


@pytest.mark.parametrize("path", [path for path, _ in every_command()], ids=" ".join)
def test_every_command_has_help(path):
    command = dict(every_command())[path]
    text = help_text(path)
    summary = command.help.strip().splitlines()[0]
    assert text.startswith(f"Usage: imgsearch {' '.join(path)} ")
    assert " ".join(summary.split()) in " ".join(text.split())  # the docstring, as click wraps it
    if isinstance(command, click.Group):
        assert all(re.search(rf"^  {name}\b", text, re.M) for name in command.commands)


def test_the_top_level_help_lists_every_command():
    text = help_text([])
    assert text.startswith("Usage: imgsearch ")
    assert all(re.search(rf"^  {name}\b", text, re.M) for name in cli.commands)


def test_every_command_that_prints_results_takes_json():
    """The README: "Every command that prints results takes `--json`"; serve prints none."""
    assert "Every command that prints results takes `--json`" in README
    for path, command in every_command():
        if not isinstance(command, click.Group) and path != ("serve",):
            assert "--json" in {opt for param in command.params for opt in param.opts}, path


def test_the_commands_the_readme_says_print_rows_take_csv_and_nl():
    said = re.search(r"those whose results are rows \(such as ([^)]*)\) also take `--csv` and `--nl`", README)
    assert said, "the README no longer says which commands print rows"
    named = {tuple(name.split()) for name in re.findall(r"`([\w ]+)`", said.group(1))}
    with_flag = {flag: {path for path, command in every_command()
                        if flag in {opt for param in command.params for opt in param.opts}}
                 for flag in ("--csv", "--nl")}
    assert len(named) == 3 and named <= with_flag["--csv"]
    assert with_flag["--csv"] == with_flag["--nl"]  # one decorator gives both


def test_every_make_target_the_readme_shows_exists():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    shown_targets = {line.split()[1] for line in shown("make ")}
    assert shown_targets and shown_targets <= targets
