from pathlib import Path

from phylovi.cli.reference import cli_reference


def test_docs_cli_md_is_generated_from_the_parser():
    docs = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
    assert docs.read_text() == cli_reference(), "run: python -m phylovi.cli.reference > docs/cli.md"


def test_building_the_command_line_does_not_import_torch():
    # torch takes about a second to import: `phylovi --help` and the numpy-only commands
    # (genotype check) must not pay for it
    import subprocess
    import sys

    code = ("import sys; from phylovi.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'scipy.stats') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
