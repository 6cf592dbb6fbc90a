"""Benchmark every inference path on this machine (``eelsprint bench``) and keep the results.

Writes ``<out>/<name>.json`` (every number) and ``<out>/<name>.md`` (the table, the exact
command, the machine and its load while running: the 2-core CI/dev machines are shared).

Usage::

    python evaluation/bench.py --out evaluation/results --name bench-cpu-2core
    python evaluation/bench.py --model MODEL --n 300 --repeats 1 --formats onnx --no-aot --paper-samples 5
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from eelsprint.bench.run import BenchConfig, format_table, run_bench
from eelsprint.classify import FingerprintClassifier
from eelsprint.data.atomic import atomic_write, write_json
from eelsprint.data.store import default_model_path
from eelsprint.realtime.export import CPU_FORMATS


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: shipped)")
    parser.add_argument("--n", type=int, default=13680)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--formats", default=",".join(CPU_FORMATS))
    parser.add_argument("--no-aot", dest="aot", action="store_false")
    parser.add_argument("--paper-samples", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("evaluation/results"))
    parser.add_argument("--name", default="bench-cpu-2core")
    args = parser.parse_args(argv)

    formats = tuple(f for f in args.formats.split(",") if f)
    config = BenchConfig(
        n=args.n, repeats=args.repeats, formats=formats, aot=args.aot, paper_samples=args.paper_samples
    )
    load_before = os.getloadavg()
    result = run_bench(FingerprintClassifier.load(args.model or default_model_path(), progress=False), config)
    command = "python evaluation/bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result["command"] = command
    result["load_average_before_after"] = [list(load_before), list(os.getloadavg())]
    table = format_table(result)
    print(table)
    write_json(args.out / f"{args.name}.json", result)
    load = ", ".join(f"{a:.1f}" for a in load_before)
    cpus = result["machine"]["usable_cpus"]
    shared = " (above the CPU count: other work shared the machine)" if max(load_before) > cpus else ""
    note = (
        f"# eelsprint bench: {args.name}\n\nCommand: `{command}`\n\n{table}\n\n"
        f"1-, 5- and 15-minute load average before the run: {load} on {cpus} CPUs{shared}.\n"
    )
    with atomic_write(args.out / f"{args.name}.md") as tmp:
        tmp.write_text(note, encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
