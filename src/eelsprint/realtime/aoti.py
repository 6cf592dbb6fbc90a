"""AOTInductor packages of the real-time graph: compiled, then loaded and run in a child process first.

torch 2.11 with CUDA 13 segfaults inside ``aoti_load_package``; a loader that crashes must
cost the compiled package, not the caller's process. :func:`aoti_problem` loads the
package and runs it on the probe batch in a child; :mod:`eelsprint.realtime.export` drops
the package (at export) or falls back to the ``torch.export`` program (at load) when it
reports a problem.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from eelsprint.exceptions import typed_first_line

__all__ = ["AOTI_FILE", "AOTI_PROBE", "aoti_problem", "compile_aoti", "load_aoti"]

AOTI_FILE = "model.aoti.pt2"
#: Run in a child process by :func:`aoti_problem`: load the package (argv 1), run the probe (argv 2).
AOTI_PROBE = (
    "import sys, safetensors.torch\n"
    "from torch._inductor import aoti_load_package\n"
    "aoti_load_package(sys.argv[1])(safetensors.torch.load_file(sys.argv[2])['probe'])\n"
)


def compile_aoti(program: torch.export.ExportedProgram, path: Path) -> dict[str, Any]:
    """Compile ``program`` into the package ``path``; ``{"aoti": True}``, or why not (``aoti_error``)."""
    try:
        from torch._inductor import aoti_compile_and_package

        aoti_compile_and_package(program, package_path=str(path))
    except Exception as err:  # no C++ compiler, unsupported platform, ...
        return {"aoti": False, "aoti_error": typed_first_line(err)}
    return {"aoti": True}


def load_aoti(path: Path) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """The package's callable, in this process (check it with :func:`aoti_problem` first)."""
    from torch._inductor import aoti_load_package

    compiled = aoti_load_package(str(path))
    return lambda x: tuple(compiled(x))


def aoti_problem(package: Path, probe: Path, timeout: float = 600.0) -> str | None:
    """Load and run an AOTInductor package in a child process; ``None`` if that works.

    Parameters
    ----------
    package, probe : path
        The compiled package and the probe batch (``probe.safetensors``).
    timeout : float
        Seconds before the child is given up.

    Returns
    -------
    str or None
        Why the package cannot run here (one line: the signal that killed the child,
        or its last error line), or ``None``.
    """
    command = [sys.executable, "-c", AOTI_PROBE, str(package), str(probe)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"loading it took more than {timeout:.0f} s"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return f"loading it killed a child process ({name}) under torch {torch.__version__}"
    lines = done.stderr.strip().splitlines()
    return f"loading it failed ({lines[-1] if lines else f'exit status {done.returncode}'})"
