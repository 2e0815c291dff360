from pathlib import Path

from phylovi.cli.reference import cli_reference


def test_docs_cli_md_is_generated_from_the_parser():
    docs = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert docs.read_text() == cli_reference(), "run: python -m phylovi.cli.reference > docs/cli.md"
