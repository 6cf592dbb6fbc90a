"""Library gaps (:mod:`eelsprint.active.gaps`): a class held out of the library is found again.

A realistic series (:mod:`eelsprint.data.realism`) of the simulator's four compositions, a quick
model fitted on the library without the 50 %-F class: its pixels must come back as the top gap,
with a prototype nearer to the 50 %-F mean fingerprint than to every class left (relative L2 on
the model's axis, the data's normalisation) and a cosine of at least 0.9 to it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from eelsprint import Config, FingerprintClassifier
from eelsprint.active.gaps import GapReport, find_gaps, mixture_misfit, relative_distance, write_gaps
from eelsprint.data.io import read_library
from eelsprint.data.preprocess import library_on_axis
from eelsprint.data.realism import RealismConfig, RealisticSeries, realistic_series
from eelsprint.data.simulate import fingerprint_library
from eelsprint.data.spectra import Library
from eelsprint.exceptions import ConfigError, InputDataError

from .conftest import SHARED_DATA
from .test_evaluation_scripts import load

HELD = "F50"


@pytest.fixture(scope="module")
def case() -> tuple[FingerprintClassifier, RealisticSeries, GapReport]:
    """Series of 2 x 16 x 24 pixels at the paper's dose; model without F50 (fit ~10 s on an idle core,
    25 s on the shared, loaded test machine)."""
    torch.set_num_threads(2)
    library = fingerprint_library()
    series = realistic_series(
        library, RealismConfig(n_frames=2, shape=(16, 24), ood_kinds=("foreign_edge", "extra_feature"))
    )
    keep = library.labels != HELD
    partial = Library(library.spectra[keep], library.energy, library.labels[keep], "without F50")
    config = Config.from_dict(
        {
            "preprocess": {"background_window": list(series.background_window)},
            "train": {"epochs": 2, "raw_epochs": 2, "gp_iterations": 60},
            "nuisance": {"n_augment": 4},
            "head": {"enabled": False},
        }
    )
    start = time.perf_counter()
    clf = FingerprintClassifier(config=config, progress=False).fit(series.spectra, partial)
    fitted = time.perf_counter()
    report = find_gaps(clf, series.spectra)
    print(f"fit {fitted - start:.1f} s, find_gaps {time.perf_counter() - fitted:.1f} s")
    return clf, series, report


def _held_out_means(clf: FingerprintClassifier, series: RealisticSeries) -> tuple[np.ndarray, int]:
    full = library_on_axis(series.library, clf.energy_, clf.config_.preprocess)
    means = full.class_means()
    return means, list(full.classes).index(HELD)


Case = tuple[FingerprintClassifier, RealisticSeries, GapReport]


def test_only_the_background_residual_is_widened_by_default(case: Case) -> None:
    """The gap-hunting case: the missing class inflates the scale estimate (0.5), which the default
    leaves alone; the background residual this generator leaves (0.14-0.16 measured) is widened."""
    clf = case[0]
    estimate = clf.diagnostics_["nuisance_estimate"]
    assert estimate["scale_sd"] > 0.3 and estimate["background_tilt"] > 1.5 * 0.03
    assert clf.diagnostics_["nuisance_widened"] == {"background_tilt": estimate["background_tilt"]}


def test_top_gap_is_the_held_out_class(case: Case) -> None:
    clf, series, report = case
    means, held = _held_out_means(clf, series)
    assert len(report.prototypes) >= 1
    top = report.prototypes[0]
    dist = relative_distance(top[None], means)[0]
    cosine = float(top @ means[held] / np.linalg.norm(top) / np.linalg.norm(means[held]))
    others = np.delete(dist, held)
    truth = series.labels.reshape(-1)[report.pixels[0]]
    print(
        dict(zip(series.library.classes, dist.round(3), strict=True)),
        cosine,
        len(truth),
        (truth == held).mean(),
    )
    assert dist[held] < others.min(), dist  # measured: 0.082 vs 0.493 (F25)
    assert cosine >= 0.9  # measured: 0.997
    assert (truth == held).mean() > 0.9  # measured: 0.99 of the top gap's 225 pixels are F50
    assert report.nearest_class[0] == "F25"  # of the classes left, the one scaled down by ~2
    assert report.model_label[0] in clf.classes_
    assert report.scores[0] == pytest.approx(len(report.pixels[0]) / series.labels.size)
    assert np.all(np.diff(report.scores) <= 0)


def test_mixture_of_two_classes_is_explained() -> None:
    """F25 lies between F50 and F12.5: their bounded mixture leaves it a small misfit (why no
    detector finds it), while F50 outside the mixture range of the rest is missed far more."""
    lib = fingerprint_library()
    means = lib.class_means()
    var = np.full(lib.n_channels, 1e-4)
    between = mixture_misfit(means[1], var, means[[0, 2, 3]], lib.energy)[0]
    outside = mixture_misfit(means[0], var, means[[1, 2, 3]], lib.energy)[0]
    assert outside > 30 * between, (outside, between)  # measured: 77.7 vs 0.34


def test_files_round_trip(case: Case, tmp_path: Path) -> None:
    clf, _, report = case
    paths = write_gaps(report, tmp_path / "gaps", clf.library_)
    assert [p.name for p in paths] == ["prototypes.csv", "gaps.json", "gaps.png"]
    assert all(p.is_file() for p in paths)
    # A one-gap file is no library on its own (read_library needs two classes): append its
    # columns to the library's CSV, as a theorist would, and read the result back.
    lib = clf.library_
    rows = [",".join(["energy_eV", *lib.labels])]
    rows += [",".join(f"{v:.10g}" for v in (e, *lib.spectra[:, c])) for c, e in enumerate(lib.energy)]
    gaps = paths[0].read_text().splitlines()
    assert gaps[0] == ",".join(["energy_eV", *(f"gap{i + 1}" for i in range(len(report.prototypes)))])
    joined = [f"{a},{b.split(',', 1)[1]}" for a, b in zip(rows, gaps, strict=True)]
    (tmp_path / "grown.csv").write_text("\n".join(joined) + "\n")
    grown = read_library(tmp_path / "grown.csv")
    n = len(lib.spectra)
    assert list(grown.classes) == [*lib.classes, *(f"gap{i + 1}" for i in range(len(report.prototypes)))]
    np.testing.assert_allclose(grown.energy, report.energy, rtol=1e-9)
    np.testing.assert_allclose(grown.spectra[n:], report.prototypes, rtol=1e-8, atol=1e-12)
    summary = json.loads(paths[1].read_text())
    assert [g["n_pixels"] for g in summary["gaps"]] == [len(p) for p in report.pixels]
    assert summary["gaps"][0]["nearest_class"] == report.nearest_class[0]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_one_line_nothing_written(case: Case, tmp_path: Path) -> None:
    clf, series, report = case
    result = clf.classify(series.spectra)
    out = tmp_path / "never"
    wrong = result.isel(x=slice(0, 10))
    with pytest.raises(
        InputDataError, match=r"navigation shape \(2, 16, 10\) does not match the data's \(2, 16, 24\)"
    ) as err:
        write_gaps(find_gaps(clf, series.spectra, result=wrong), out, clf.library_)
    assert "\n" not in str(err.value)
    other = result.assign_coords({"class": ["a", "b", "c"]})
    with pytest.raises(InputDataError, match="another model"):
        find_gaps(clf, series.spectra, result=other)
    with pytest.raises(ConfigError, match="max_gaps >= 1"):
        find_gaps(clf, series.spectra, result=result, max_gaps=0)
    narrow = Library(clf.library_.spectra[:, :50], clf.library_.energy[:50], clf.library_.labels, "narrow")
    with pytest.raises(InputDataError, match="narrow: library covers"):
        write_gaps(report, out, narrow)
    assert not out.exists()


@pytest.mark.skipif(not (SHARED_DATA / "mxene_dft").is_dir(), reason="../shared/data/mxene_dft not present")
def test_gap_study_smoke(tmp_path: Path) -> None:
    """``evaluation/gap_study.py`` with tiny arguments: JSON and markdown written, the numbers consistent."""
    out, md = tmp_path / "g.json", tmp_path / "g.md"
    args = [
        "--cases",
        "mxene:F50",
        "--seeds",
        "0",
        "--thresholds",
        "2",
        "--frames",
        "1",
        "--shape",
        "12",
        "16",
    ]
    args += ["--epochs", "1", "--gp-iterations", "20", "--json", str(out), "--markdown", str(md)]
    result = load("gap_study").main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    run = result["cases"]["mxene:F50"][0]["threshold 2"]
    assert run["n_gaps"] == len(run["gaps"])
    if run["n_gaps"]:
        d = run["top_distance"]
        assert run["pass"] == (min(d, key=d.__getitem__) == "F50" and run["top_cosine_to_held_out"] >= 0.9)
    assert "| mxene:F50 | 0 |" in md.read_text() and "criterion met in" in md.read_text()
