"""The command line against README.md's options table, both read for real.

Every option of ``build_parser()`` has a row in the table under "## Usage" (first
column: the option, as ``-s, --name METAVAR``) and every row an option, with the
same short form and metavar; a default that the help text states as
"(default: X)" is the parser's default and the one the README row states.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from pipeline.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
HELP_DEFAULT = re.compile(r"\(default: (.+?)(?: = |[,;)]|$)")
README_DEFAULT = re.compile(r"(?:\(|; )default:? (.+?)(?: = |[,;:)]|$)")


def options_table(text: str) -> list[list[str]]:
    """The cells of each body row of the first table under "## Usage" whose first header is "option"."""
    usage = re.search(r"^## Usage\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert usage is not None, "README.md has no '## Usage' section"
    rows: list[list[str]] = []
    header_seen = False
    for line in usage.group(1).splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if not header_seen:
            header_seen = cells[0] == "option"
        elif not set(cells[0]) <= set("-: "):  # not the |---| line
            rows.append(cells)
    return rows


def readme_options() -> dict[str, dict]:
    """``--name`` -> the flags, metavar and stated default of its README row."""
    rows = options_table(README.read_text(encoding="utf-8"))
    assert rows, "README.md has no options table (| option | meaning |) under ## Usage"
    found: dict[str, dict] = {}
    for option, meaning in ((row[0], row[1]) for row in rows):
        specs = re.findall(r"`([^`]+)`", option)
        assert specs, f"README options table: row {option!r} names no option in backticks"
        stated = README_DEFAULT.search(meaning)
        for spec in specs:
            words = spec.replace(",", " ").split()
            flags = [w for w in words if w.startswith("-")]
            longs = [f for f in flags if f.startswith("--")]
            assert len(longs) == 1, f"README options table: {spec!r} should name one --long option"
            assert longs[0] not in found, f"README options table: {longs[0]} has two rows"
            found[longs[0]] = {
                "flags": flags,
                "metavar": " ".join(w for w in words if not w.startswith("-")) or None,
                # A row of several options states no default for any one of them.
                "default": stated.group(1).replace("`", "").rstrip("/") if stated and len(specs) == 1 else None,
            }
    return found


def parser_options() -> dict[str, argparse.Action]:
    """``--name`` (the snake_case spelling, named after the dest) -> its action; -h/--help left out."""
    actions = build_parser()._actions
    return {f"--{a.dest}": a for a in actions if not isinstance(a, argparse._HelpAction)}


def shown_metavar(action: argparse.Action) -> str | None:
    """What follows the flags in the usage: the metavar, ``a|b|c`` for choices, nothing for a switch."""
    if action.nargs == 0:
        return None
    if action.metavar is not None:
        return action.metavar
    if action.choices is not None:
        return "|".join(action.choices)
    return action.dest.upper()


def converted(action: argparse.Action, text: str):
    """What the parser makes of ``text`` given to ``action``; ValueError when it refuses it."""
    if action.choices is not None and text not in action.choices:
        raise ValueError("not one of its choices")
    try:
        return action.type(text) if action.type is not None else text
    except (argparse.ArgumentTypeError, TypeError) as exc:
        raise ValueError(str(exc)) from None


def disagreement(action: argparse.Action, stated: str, options: dict) -> str | None:
    """Why ``stated`` is not ``action``'s default (None when it is)."""
    if action.default is None:
        # None is chosen later: "auto" (what the type makes of it), "$VARIABLE" or "from --option".
        if stated == "auto":
            try:
                ok = converted(action, stated) is None
            except ValueError:
                ok = False
        elif stated.startswith("$"):
            ok = re.fullmatch(r"\$[A-Z][A-Z0-9_]*", stated) is not None
        elif stated.startswith("from "):
            ok = stated.removeprefix("from ") in options
        else:
            ok = False
        return None if ok else f"states {stated!r}, the parser's default is None"
    try:
        value = converted(action, stated)
    except ValueError as exc:
        return f"states {stated!r}, which the option does not accept ({exc})"
    return None if value == action.default else f"states {stated!r}, the parser's default is {action.default!r}"


def test_readme_table_is_parsed():
    text = (
        "# T\n\n| file | what |\n|---|---|\n| `--no` | other table |\n\n## Usage\n\n| a | b |\n|---|---|\n| x | y |\n\n"
        "| option | meaning |\n|---|---|\n| `-a, --b_c X\\|Y` | d (default `e/`) |\n| `--f` | g |\n\n"
        "| option | later |\n|---|---|\n| `--h` | i |\n\n## Next\n"
    )
    assert options_table(text) == [["`-a, --b_c X|Y`", "d (default `e/`)"], ["`--f`", "g"]]


def test_every_parser_option_has_a_readme_row():
    missing = sorted(set(parser_options()) - set(readme_options()))
    assert not missing, f"options without a row in README.md's options table: {', '.join(missing)}"


def test_every_readme_row_is_a_parser_option():
    unknown = sorted(set(readme_options()) - set(parser_options()))
    assert not unknown, f"README.md's options table lists options the parser does not have: {', '.join(unknown)}"


@pytest.mark.parametrize("name", sorted(parser_options()))
def test_flags_and_metavar_match_readme(name):
    action, row = parser_options()[name], readme_options().get(name)
    if row is None:
        pytest.skip(f"{name} has no README row (test_every_parser_option_has_a_readme_row fails)")
    # The README shows the short forms and the snake_case name; "Every option also has a dashed spelling".
    dashed = [f"--{action.dest.replace('_', '-')}"] if "_" in action.dest else []
    assert action.option_strings == row["flags"] + dashed, (
        f"README shows {row['flags']}, the parser {action.option_strings}"
    )
    shown = shown_metavar(action)
    if action.choices is not None and action.metavar is None:
        assert row["metavar"] is not None and set(row["metavar"].split("|")) == set(action.choices), name
    else:
        assert row["metavar"] == shown, f"{name}: README shows {row['metavar']!r}, --help shows {shown!r}"


def test_stated_defaults_agree():
    options, rows = parser_options(), readme_options()
    checked, wrong = 0, []
    for name, action in options.items():
        stated = HELP_DEFAULT.search(action.help or "")
        if stated is None:
            continue
        checked += 1
        if why := disagreement(action, stated.group(1), options):
            wrong.append(f"{name} --help {why}")
        readme = rows.get(name, {}).get("default")
        if readme is None:
            continue
        if why := disagreement(action, readme, options):
            wrong.append(f"{name} README {why}")
        elif action.default is None and readme != stated.group(1):
            wrong.append(f"{name}: README states {readme!r}, --help {stated.group(1)!r}")
    assert checked >= 10, f"only {checked} help texts state a default: has the '(default: X)' wording changed?"
    assert not wrong, "\n".join(wrong)


def test_short_forms_parse():
    args = build_parser().parse_args(["-i", "in", "-v", "a.mp4", "-o", "out", "-m", "poses", "-l", "llm"])
    assert (args.input, args.video, args.output, args.models) == (["in"], ["a.mp4"], "out", "poses")
    assert args.llm_data == "llm"
