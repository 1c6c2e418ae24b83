"""README.md and docs/ say what the code does: every documented command and flag exists, every command is
documented, and the exit-code table is the one the code uses.

Commands are read from the docs' code blocks and inline code (``harness run ...``, ``.venv/bin/harness ...``,
``sudo harness ...``); placeholders (``<run>``, ``NAME``), optional brackets and ``a|b`` alternatives are read
the way a person reads them. The CLI is the real parser the ``harness`` command builds.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from harness import cli, errors

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# `harness <command> ...` up to the end of a code span or line; a prefix path such as .venv/bin/ is allowed.
_INVOCATION = re.compile(r"(?:^|[\s`(])(?:\S*/)?harness ((?:[a-z][\w-]*)(?:[^`\n]*))")
_FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps sub-commands only here
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def _invocations() -> list[tuple[str, str]]:
    """(where, the text after ``harness ``) for every documented invocation."""
    found = []
    for doc in DOCS:
        # a shell line continued with a backslash is one command line
        text = re.sub(r"\\\n\s*", " ", doc.read_text(encoding="utf-8"))
        for lineno, line in enumerate(text.splitlines(), 1):
            for match in _INVOCATION.finditer(line):
                found.append((f"{doc.relative_to(ROOT)}:{lineno}", match.group(1)))
    return found


def _resolve(parser: argparse.ArgumentParser, words: list[str]) -> tuple[list[argparse.ArgumentParser], str]:
    """The parsers a documented command line goes through (top, command, verb) and its name."""
    chain, name = [parser], []
    for word in words:
        subs = _subparsers(chain[-1])
        if not subs:
            break
        alternatives = word.strip("[]").split("|")
        if not all(alt in subs for alt in alternatives):
            break
        chain.append(subs[alternatives[0]])
        name.append(word)
    return chain, " ".join(name)


def test_documented_commands_and_flags_exist() -> None:
    parser = cli.build_parser()
    commands = _subparsers(parser)
    problems = []
    checked = 0
    for where, text in _invocations():
        words = text.split()
        if not words or words[0] not in commands:
            # prose such as "the harness image" is not an invocation; a command-like word must be real
            if words and re.fullmatch(r"[a-z]+(-[a-z]+)*", words[0]) and text.startswith(words[0] + " -"):
                problems.append(f"{where}: 'harness {words[0]}' is not a command")
            continue
        chain, name = _resolve(parser, words)
        known = set().union(*(_options(p) for p in chain[1:]))
        for flag in _FLAG.findall(text):
            if flag not in known:
                problems.append(f"{where}: 'harness {name}' has no option {flag}")
        checked += 1
    assert checked > 40, f"only {checked} documented invocations found: the pattern no longer reads the docs"
    assert not problems, "documented but not in the CLI:\n" + "\n".join(problems)


def test_every_command_is_documented() -> None:
    text = "\n".join(doc.read_text(encoding="utf-8") for doc in DOCS)
    missing = [name for name in _subparsers(cli.build_parser()) if not re.search(rf"harness {re.escape(name)}\b", text)]
    assert not missing, f"commands no document mentions: {missing}"


def _table(text: str) -> dict[int, str]:
    return {int(code): " ".join(meaning.split()) for code, meaning in re.findall(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|$",
                                                                                 text, re.MULTILINE)}


def test_exit_code_table_matches_the_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = _table(section)
    epilog = {int(code): " ".join(meaning.split())
              for code, meaning in re.findall(r"^\s+(\d+)\s+(.+)$", cli.__doc__ or "", re.MULTILINE)}
    assert documented == epilog, "README's exit-code table and `harness --help` disagree"
    raised = {cls.exit_code for cls in vars(errors).values()
              if isinstance(cls, type) and issubclass(cls, errors.HarnessError)}
    assert raised <= set(documented), f"exit codes raised but not documented: {sorted(raised - set(documented))}"
    assert {0, 130} <= set(documented)


@pytest.mark.parametrize("command", sorted(_subparsers(cli.build_parser())))
def test_help_of_every_command_renders(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert command in capsys.readouterr().out
