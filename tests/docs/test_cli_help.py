"""Every option of every ``smoothguard`` command says what it does in ``--help``."""

import argparse

from shared.tools.cli import build_parser


def options_without_help(parser: argparse.ArgumentParser, path: str = "smoothguard") -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += options_without_help(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction) and not (action.help or "").strip():
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_has_a_help_text():
    assert options_without_help(build_parser()) == []


def test_up_and_api_show_their_address_defaults():
    parser = build_parser()
    for command in ("up", "api"):
        text = parser._subparsers._group_actions[0].choices[command].format_help()  # type: ignore[union-attr]
        assert "(default 127.0.0.1)" in text and "(default 8000)" in text
