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


def test_the_command_line_lets_idle_openmp_threads_sleep_before_torch_loads():
    # torch's OpenMP runtime reads OMP_WAIT_POLICY once, when it loads: the command must
    # set it before anything imports torch, and leave a user's own choice alone
    import os
    import subprocess
    import sys

    code = ("import os, sys; from phylovi.cli import main; main(['--version']); "
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    for given, expected in ((None, "PASSIVE False"), ("active", "active False")):
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        if given is not None:
            env["OMP_WAIT_POLICY"] = given
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=env, check=True)
        assert result.stdout.strip().splitlines()[-1] == expected
