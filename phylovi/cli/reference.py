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
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():
        parts += [f"## phylovi {name}\n", "```text", sub.format_help().rstrip(), "```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    print(cli_reference(), end="")
