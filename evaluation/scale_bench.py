"""Out-of-core benchmark (issue 11): classify a series larger than the memory the process is given.

1. Writes a realistic series (:func:`eelsprint.data.largeseries.write_large_series`, float32,
   library units) of ``--frames`` frames to a Zarr store, a block of frames at a time.
2. In a fresh process, ``classify --format zarr`` of the whole store with ``--memory-limit``;
   the process's own peak RSS (Linux's ``VmHWM``; ``getrusage`` would report the parent's) is
   the measured memory.
3. On the first ``--in-memory-frames`` frames (saved as ``.npz``, data that fit), the in-memory
   path (``read_spectra`` + ``classify`` + NetCDF) and the out-of-core path on the same file,
   each in a fresh process: throughput of both, and the largest difference of their results.

Run: ``python evaluation/scale_bench.py --frames 128 --shape 128,128 --memory-limit 750MB
--in-memory-frames 4 --fit-subsample 20000`` (3.0 GB of spectra). Writes JSON and markdown
(``--json``, ``--md``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _peak_rss_mb() -> float:
    from eelsprint.bench.timing import peak_rss_mib  # VmHWM: ru_maxrss inherits the parent's peak

    return peak_rss_mib()


def _child(args: argparse.Namespace) -> dict[str, Any]:
    """One measured run in this (fresh) process; prints its JSON."""
    import psutil

    from eelsprint.scale.run import limit_malloc_arenas

    if args.limit is not None:
        limit_malloc_arenas()  # before any thread (PyTorch's, Zarr's) has its own arena, as the CLI does
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.data.io import open_spectra, read_spectra, write_dataset
    from eelsprint.scale.run import ScaleOptions, chunk_bytes_for, classify_file

    if args.child == "fit":
        return _fit_child(args)
    clf = FingerprintClassifier.load_default(progress=False)
    in_use = psutil.Process().memory_info().rss / 2**20
    start = time.perf_counter()
    if args.child == "in-memory":
        spectra = read_spectra(args.data)
        ds = clf.classify(spectra)
        write_dataset(ds, args.out)
        n, batch, read = int(ds["label"].size), None, None
    else:
        options = ScaleOptions(memory_limit=args.limit)
        lazy = open_spectra(args.data, chunk_bytes=None)
        batch = chunk_bytes_for(options.chunk_bytes, args.limit, stored_bytes=lazy.stored_nbytes)
        read = lazy.rechunk(batch).chunk_nbytes
        del lazy
        run, _ = classify_file(clf, args.data, args.out, options, progress=False)
        n = run.n_spectra
    seconds = time.perf_counter() - start
    return {
        "path": args.child,
        "n_spectra": n,
        "seconds": seconds,
        "spectra_per_s": n / seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_mb": in_use,
        "batch_mb": None if batch is None else batch / 2**20,  # classified at a time
        "read_mb": None if read is None else read / 2**20,  # largest chunk read whole
    }


def _fit_child(args: argparse.Namespace) -> dict[str, Any]:
    """``fit_large`` on the whole series (one chunk at a time) with a short schedule."""
    import psutil

    from eelsprint.config import Config
    from eelsprint.data.io import open_spectra
    from eelsprint.data.simulate import fingerprint_library
    from eelsprint.scale.run import chunk_bytes_for
    from eelsprint.scale.train import fit_large

    in_use = psutil.Process().memory_info().rss / 2**20
    lazy = open_spectra(args.data, chunk_bytes=None)
    batch = chunk_bytes_for(100 * 2**20, args.limit, stored_bytes=lazy.stored_nbytes)
    lazy = lazy.rechunk(batch)
    epochs = {"epochs": args.fit_epochs, "raw_epochs": args.fit_epochs}
    config = Config.from_dict({"train": epochs, "head": {"enabled": False}})  # a short schedule
    start = time.perf_counter()
    large = fit_large(lazy, fingerprint_library(), config, n_subsample=args.fit_subsample, batch_bytes=batch)
    large.model.save(args.out)
    seconds = time.perf_counter() - start
    return {
        "path": "fit",
        "n_spectra": large.n_spectra,
        "n_seen_by_pca": large.n_seen,
        "n_subsample": large.n_subsample,
        "epochs": args.fit_epochs,
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_mb": in_use,
    }


def _measure(kind: str, data: Path, out: Path, limit: int | None, *extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, "--data", str(data), "--out", str(out), *extra]
    if limit is not None:
        command += ["--limit", str(limit)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} run failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median_run(kind: str, data: Path, out: Path, limit: int | None, repeats: int) -> dict[str, Any]:
    """``repeats`` fresh-process runs: the median-throughput one, every throughput, the top peak."""
    runs = [
        _measure(kind, data, out if i == 0 else out.with_name(f"{out.stem}-{i}{out.suffix}"), limit)
        for i in range(max(1, repeats))
    ]
    runs.sort(key=lambda r: r["spectra_per_s"])
    median = dict(runs[len(runs) // 2])
    median["all_spectra_per_s"] = [r["spectra_per_s"] for r in runs]
    median["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return median


def _table(r: dict[str, Any]) -> str:
    big, ram, ooc = r["out_of_core"], r["in_memory"], r["out_of_core_same_data"]
    n_ram, n_ooc = (len(run.get("all_spectra_per_s", [0])) for run in (ram, ooc))
    return "\n".join(
        [
            f"# Out-of-core classification ({r['machine']})",
            "",
            f"Series: {r['series']['n_spectra']:,} spectra x {r['series']['channels']} channels, "
            f"{r['series']['gb']:.2f} GB float32 (Zarr, {r['series']['frames']} frames of "
            f"{r['series']['shape'][0]} x {r['series']['shape'][1]}); "
            f"written in {r['series']['write_s']:.0f} s.",
            "",
            "| run | spectra | s | spectra/s | peak RSS (MiB) | limit (MiB) |",
            "|---|---:|---:|---:|---:|---:|",
            f"| out of core, whole series | {big['n_spectra']:,} | {big['seconds']:.1f} | "
            f"{big['spectra_per_s']:,.0f} | {big['peak_rss_mb']:.0f} | {r['memory_limit_mb']:.0f} |",
            f"| in memory, first frames (median of {n_ram}) | {ram['n_spectra']:,} | {ram['seconds']:.1f} | "
            f"{ram['spectra_per_s']:,.0f} | {ram['peak_rss_mb']:.0f} | - |",
            f"| out of core, same frames (median of {n_ooc}) | {ooc['n_spectra']:,} | {ooc['seconds']:.1f} | "
            f"{ooc['spectra_per_s']:,.0f} | {ooc['peak_rss_mb']:.0f} | {r['memory_limit_mb']:.0f} |",
            "",
            f"- series / memory limit: {r['size_over_limit']:.2f}; peak RSS within the limit: "
            f"{r['peak_within_limit']} (before the first chunk: {big['rss_before_mb']:.0f} MB, "
            f"chunks of {big['read_mb']:.1f} MiB read whole, classified {big['batch_mb']:.1f} MiB at a "
            "time)",
            f"- throughput out of core / in memory: {r['throughput_ratio']:.2f} (whole series) and "
            f"{r['throughput_ratio_same_data']:.2f} (same frames); target 0.70",
            f"- largest difference of the results on the same frames: {r['max_abs_diff']:.2e}",
            *_fit_lines(r),
            "",
        ]
    )


def _fit_lines(r: dict[str, Any]) -> list[str]:
    fit = r.get("fit")
    if not fit:
        return []
    lines = [
        f"- `fit_large` on the whole series: incremental PCA over {fit['n_seen_by_pca']:,} of "
        f"{fit['n_spectra']:,} spectra, trained on {fit['n_subsample']:,} ({fit['epochs']} epochs) in "
        f"{fit['seconds']:.0f} s; peak RSS {fit['peak_rss_mb']:.0f} MiB "
        f"(limit {r.get('fit_memory_limit_mb', r['memory_limit_mb']):.0f} MiB)"
    ]
    small = r.get("fit_first_frames")
    if small:
        lines.append(
            f"- the same fit on the first frames only ({small['n_spectra']:,} spectra): peak RSS "
            f"{small['peak_rss_mb']:.0f} MiB in {small['seconds']:.0f} s; the series "
            f"{fit['n_spectra'] / small['n_spectra']:.0f}x larger adds "
            f"{fit['peak_rss_mb'] - small['peak_rss_mb']:+.0f} MiB (bounded: the stream holds one chunk)"
        )
    return lines


def _fit_only(args: argparse.Namespace, limit: int) -> dict[str, Any]:
    result = json.loads(args.json.read_text())
    options = ("--fit-subsample", str(args.fit_subsample), "--fit-epochs", str(args.fit_epochs))
    result["fit"] = _measure("fit", args.work / "series.zarr", args.work / "out" / "model", limit, *options)
    first = args.work / "first.npz"
    result["fit_first_frames"] = _measure("fit", first, args.work / "out" / "model-first", limit, *options)
    result["fit_memory_limit_mb"] = limit / 2**20
    result["fit_peak_within_limit"] = result["fit"]["peak_rss_mb"] <= limit / 2**20
    result["fit_command"] = "python evaluation/scale_bench.py " + " ".join(sys.argv[1:])
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.md:
        args.md.write_text(_table(result))
    print(_table(result))
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--shape", default="64,64", help="Y,X of each frame.")
    parser.add_argument("--memory-limit", default="750MB")
    parser.add_argument("--in-memory-frames", type=int, default=16)
    parser.add_argument(
        "--frames-per-block", type=int, default=1, help="Frames generated at a time (and per stored chunk)."
    )
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a temporary one).")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--machine", default="CPU, 2 cores")
    parser.add_argument("--fit-subsample", type=int, default=0, help="Also fit on N spectra (0: no fit).")
    parser.add_argument("--fit-epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="Runs of the short (same frames) paths.")
    parser.add_argument(
        "--fit-only", action="store_true", help="Only the fit, on --work's series, added to --json's results."
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = _child(args)
        print(json.dumps(result))
        return result

    import xarray as xr

    from eelsprint.data.io import open_spectra, read_dataset
    from eelsprint.data.largeseries import write_large_series
    from eelsprint.data.realism import RealismConfig
    from eelsprint.data.resultstore import read_result_store
    from eelsprint.data.simulate import fingerprint_library
    from eelsprint.scale.run import parse_size

    shape = tuple(int(n) for n in args.shape.split(","))
    limit = parse_size(args.memory_limit, "--memory-limit")
    if args.fit_only:
        return _fit_only(args, limit)
    work = args.work or Path(tempfile.mkdtemp(prefix="scale-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        big = write_large_series(
            work / "series.zarr",
            fingerprint_library(),
            args.frames,
            RealismConfig(shape=shape),
            args.frames_per_block,
        )
        write_s = time.perf_counter() - start
        lazy = open_spectra(big)
        first = lazy.block((slice(0, min(args.in_memory_frames, args.frames)), slice(None), slice(None)))
        np.savez(work / "first.npz", x=first.data.astype(np.float32), energy=first.energy)
        del first
        whole = _measure("out-of-core", big, work / "out" / "series.zarr", limit)
        ram = _median_run("in-memory", work / "first.npz", work / "out" / "first.nc", None, args.repeats)
        same = _median_run(
            "out-of-core", work / "first.npz", work / "out" / "first.zarr", limit, args.repeats
        )
        fit = fit_first = None
        if args.fit_subsample:
            options = ("--fit-subsample", str(args.fit_subsample), "--fit-epochs", str(args.fit_epochs))
            fit = _measure("fit", big, work / "out" / "model", limit, *options)
            fit_first = _measure("fit", work / "first.npz", work / "out" / "model-first", limit, *options)
        a, b = read_dataset(work / "out" / "first.nc"), read_result_store(work / "out" / "first.zarr").load()
        diff = max(float(np.max(np.abs(a[k].values - b[k].values))) for k in a.data_vars)
        xr.testing.assert_equal(a["label"], b["label"])
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "machine": args.machine,
        "command": "python evaluation/scale_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "series": {
            "frames": args.frames,
            "shape": list(shape),
            "channels": lazy.n_channels,
            "n_spectra": int(np.prod(lazy.nav_shape)),
            "gb": lazy.nbytes / 1e9,
            "write_s": write_s,
        },
        "memory_limit_mb": limit / 2**20,
        "size_over_limit": lazy.nbytes / limit,
        "out_of_core": whole,
        "in_memory": ram,
        "out_of_core_same_data": same,
        "peak_within_limit": whole["peak_rss_mb"] <= limit / 2**20,
        "throughput_ratio": whole["spectra_per_s"] / ram["spectra_per_s"],
        "throughput_ratio_same_data": same["spectra_per_s"] / ram["spectra_per_s"],
        "max_abs_diff": diff,
        "fit": fit,
        "fit_first_frames": fit_first,
    }
    if fit is not None:
        result["fit_peak_within_limit"] = fit["peak_rss_mb"] <= limit / 2**20
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.md:
        args.md.write_text(_table(result))
    print(_table(result))
    return result


if __name__ == "__main__":
    main()
