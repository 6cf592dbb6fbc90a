"""The README's test command is the one CI runs, and its demo command runs `eelsprint demo`."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    parts = text.split("```bash\n")[1:]
    return [p.split("```")[0].strip() for p in parts]


def test_ci_runs_the_readme_test_command() -> None:
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    demo, tests = blocks[0], blocks[1]
    assert demo.endswith("eelsprint demo") and "pip install torch==2.13.0" in demo
    ci = (ROOT / ".ci" / "run").read_text()
    command = tests.split("&& ", 1)[1].split("&& ", 1)[1]  # after venv creation and activation
    assert command in ci
    assert "set -euo pipefail" in ci
