"""The active-learning commands: ``suggest``, ``update`` and ``gaps``.

Every input is read and checked before anything is written, so a bad table, a
foreign result or a pixel outside the scan leaves no output behind.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from eelsprint.cli.common import (
    DataArg,
    ModelOpt,
    NavShapeOpt,
    OverwriteOpt,
    app,
    model_warnings,
    parse_nav_shape,
)
from eelsprint.exceptions import ConfigError, InputDataError

__all__ = ["gaps", "suggest", "update"]

LoopOpt = Annotated[
    Path | None,
    typer.Option("--loop", help="Loop record (JSON) to add this round to; created if missing."),
]


@app.command()
def suggest(
    result: Annotated[
        Path, typer.Argument(help="Classification result (.nc) written by `eelsprint classify`.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV of the pixels to acquire next.")],
    k: Annotated[int, typer.Option("--k", help="How many pixels.")] = 50,
    strategy: Annotated[str, typer.Option(help="bald, entropy, margin, ood or random.")] = "bald",
    min_distance: Annotated[
        float, typer.Option(help="Smallest distance (pixels) between two picks in one frame.")
    ] = 2.0,
    exclude: Annotated[
        Path | None, typer.Option(help="CSV of pixels already re-acquired (navigation columns).")
    ] = None,
    loop: LoopOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the random strategy.")] = 0,
    overwrite: OverwriteOpt = False,
) -> None:
    """Rank the pixels of RESULT to re-acquire or label next; write them as a CSV for the microscope."""
    import numpy as np

    from eelsprint.active.loop import LoopRecord
    from eelsprint.active.pixels import flat_indices, read_table, write_table
    from eelsprint.active.suggest import nav_layout
    from eelsprint.active.suggest import suggest as pick
    from eelsprint.data.io import read_dataset
    from eelsprint.data.outputs import check_output

    check_output(out, "table", overwrite=overwrite, inputs=[result])
    ds = read_dataset(result)
    dims, shape = nav_layout(ds)
    skip = [flat_indices(read_table(exclude), dims, shape, str(exclude))] if exclude else []
    record = LoopRecord.open(loop) if loop else None
    if record is not None:
        skip.append(flat_indices(record.acquired(dims), dims, shape, str(loop)))
    excluded = np.unique(np.concatenate(skip)) if skip else np.zeros(0, np.int64)
    table = pick(ds, k, strategy, min_distance=min_distance, exclude=excluded, seed=seed)
    write_table(table, out)
    if record is not None:
        info = {"strategy": strategy, "k": k, "result": str(result), "encoder_id": ds.attrs.get("encoder_id")}
        entry = record.start_round(table, dims, **info)
        typer.echo(f"loop {loop}: round {entry['round']} opened")
    typer.echo(
        f"{len(table)} pixels by {strategy} (scores {table['score'].iloc[0]:.3g} to "
        f"{table['score'].iloc[-1]:.3g}; {len(excluded)} excluded) -> {out}"
    )


@app.command()
def update(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `eelsprint fit`.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    result: Annotated[
        Path | None, typer.Option(help="The result (.nc) whose pixels --labels and --pixels name.")
    ] = None,
    labels: Annotated[
        Path | None, typer.Option(help="CSV: navigation columns and `class` of labelled pixels.")
    ] = None,
    reacquired: Annotated[Path | None, typer.Option(help="Spectra re-acquired at the --pixels.")] = None,
    pixels: Annotated[
        Path | None, typer.Option(help="CSV: navigation columns of each re-acquired spectrum, in order.")
    ] = None,
    merged: Annotated[
        Path | None, typer.Option(help="Write RESULT with the re-acquired pixels classified again (.nc).")
    ] = None,
    library: Annotated[Path | None, typer.Option(help="Fingerprints to add (.csv or .npz).")] = None,
    min_confidence: Annotated[
        float, typer.Option(help="Re-acquired spectra join the evidence at this probability or more.")
    ] = 0.9,
    transfer: Annotated[
        bool,
        typer.Option(
            "--transfer/--no-transfer",
            help="Also put each confident re-acquired label on the pixel's earlier latent (in --result).",
        ),
    ] = True,
    loop: LoopOpt = None,
    nav_shape: NavShapeOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Refit MODEL_DIR's GP classifier (and head) on new evidence, keeping the encoders (seconds)."""
    from eelsprint.active.loop import LoopRecord
    from eelsprint.active.pixels import flat_indices, read_table
    from eelsprint.active.suggest import nav_layout
    from eelsprint.active.update import (
        check_result,
        confident,
        labelled_evidence,
        merge_evidence,
        reacquired_evidence,
        replace_pixels,
    )
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.data.io import read_dataset, read_library, read_spectra, write_dataset
    from eelsprint.data.outputs import check_output

    if (labels or pixels or merged) and result is None:
        raise ConfigError("--labels, --pixels and --merged name pixels of a result: pass it with --result")
    if (reacquired is None) != (pixels is None):
        raise ConfigError("--reacquired and --pixels go together: the spectra and where they were taken")
    if not (labels or reacquired or library):
        raise ConfigError("nothing to update with: give --labels, --reacquired with --pixels, or --library")
    inputs = [p for p in (model_dir, result, labels, reacquired, pixels, library) if p is not None]
    check_output(out, "model", overwrite=overwrite, inputs=inputs)
    if merged is not None:
        check_output(merged, "result", overwrite=overwrite, inputs=inputs)
    clf = FingerprintClassifier.load(model_dir, progress=False)
    ds = read_dataset(result) if result is not None else None
    if ds is not None:
        check_result(ds, clf, str(result))
    added = read_library(library, min_classes=1) if library is not None else None
    classes = [*map(str, clf.classes_), *(map(str, added.classes) if added is not None else [])]
    given = labelled_evidence(ds, read_table(labels), classes, str(labels)) if labels and ds else None
    pseudo, patch, where, used = None, None, None, 0
    if reacquired is not None and pixels is not None and ds is not None:
        dims, shape = nav_layout(ds)
        where = flat_indices(read_table(pixels), dims, shape, str(pixels))
        spectra = read_spectra(reacquired, parse_nav_shape(nav_shape))
        n = spectra.flat().shape[0]
        if n != len(where):
            raise InputDataError(f"{pixels}: {len(where)} pixels for the {n} spectra in {reacquired}")
        with model_warnings():  # a longer dwell than the fitted data's: underconfident, fewer labels used
            pseudo, patch = reacquired_evidence(
                clf,
                spectra,
                min_confidence,
                result=ds if transfer else None,
                pixels=where if transfer else None,
            )
        used = int(confident(patch, min_confidence).sum())
    start = time.perf_counter()
    new = clf.update(merge_evidence(given, pseudo), added)
    new.save(out)
    if merged is not None and ds is not None and patch is not None and where is not None:
        write_dataset(replace_pixels(ds, patch, where), merged)
    report = new.diagnostics_["update"]
    returned = {"labelled": 0 if given is None else len(given.labels),
                "reacquired": 0 if where is None else len(where),
                "reacquired_used": used,
                "new_classes": report["new_classes"], "advise_fit": report["advise_fit"],
                "model": str(out)}  # fmt: skip
    if loop is not None:
        LoopRecord.open(loop).finish_round(returned)
    typer.echo(
        f"updated in {time.perf_counter() - start:.1f} s: {returned['labelled']} labelled, "
        f"{returned['reacquired_used']} of {returned['reacquired']} re-acquired pixels used, "
        f"classes {', '.join(new.classes_)} -> {out}"
    )
    for reason in report["reasons"]:
        typer.echo(f"warning: a full `eelsprint fit` is advised: {reason}", err=True)


@app.command()
def gaps(
    data: DataArg,
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for prototypes.csv, gaps.json, gaps.png.")],
    max_gaps: Annotated[int, typer.Option(help="Most prototypes to report.")] = 5,
    nav_shape: NavShapeOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Find groups of pixels in DATA that no library class explains; write their prototype spectra."""
    from eelsprint.active.gaps import find_gaps, write_gaps
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.data.checks import join_inputs
    from eelsprint.data.io import read_spectra
    from eelsprint.data.outputs import check_folder_output

    check_folder_output(out, ["prototypes.csv", "gaps.json", "gaps.png"], overwrite=overwrite)
    clf = FingerprintClassifier.load(model, progress=False)
    grid = parse_nav_shape(nav_shape)
    spectra = join_inputs([read_spectra(path, grid) for path in data], None)
    start = time.perf_counter()
    with model_warnings():
        found = find_gaps(clf, spectra, max_gaps=max_gaps)
    write_gaps(found, out, clf.library_)
    sizes = ", ".join(str(len(p)) for p in found.pixels) or "none"
    typer.echo(
        f"{len(found.pixels)} gap(s) (pixels: {sizes}) in {time.perf_counter() - start:.1f} s -> "
        f"{out}/prototypes.csv, gaps.json, gaps.png"
    )
