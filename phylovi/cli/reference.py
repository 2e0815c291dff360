"""Write the command-line reference (docs/cli.md) from the parser itself.

    python -m phylovi.cli.reference > docs/cli.md

A test checks that docs/cli.md equals this output, so the reference cannot drift.
"""

from __future__ import annotations

import os


def cli_reference() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal width
    from phylovi.cli import build_parser

    parser = build_parser()
    parts = ["# Command line\n",
             "Generated from the parser by `python -m phylovi.cli.reference`; do not edit.\n",
             "Every command exits with 0 on success, 2 on bad input or arguments (one line on "
             "stderr, no partial output file) and 130 when interrupted.\n",
             "## phylovi\n", "```text", parser.format_help().rstrip(), "```\n"]
    _subcommands(parser, "phylovi", parts)
    return "\n".join(parts)


def _subcommands(parser, prefix: str, parts: list[str]) -> None:
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                parts += [f"## {prefix} {name}\n", "```text", sub.format_help().rstrip(), "```\n"]
                _subcommands(sub, f"{prefix} {name}", parts)


if __name__ == "__main__":
    print(cli_reference(), end="")
