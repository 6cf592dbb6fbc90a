"""Out of core (issue 11): lazy input, chunk plans, Zarr result stores, resume, the command line.

The shipped model classifies small simulated series (a few MB) cut into many chunks, so every
path (chunked, resumed, interrupted) is compared with the in-memory result of the same spectra.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from eelsprint.classify import FingerprintClassifier
from eelsprint.data.io import open_spectra, read_spectra
from eelsprint.data.lazy import LazySpectra, nav_chunks, open_array_file
from eelsprint.data.resultstore import done_chunks, read_result_store
from eelsprint.data.simulate import SimulatedSeries, simulate_series
from eelsprint.data.store import default_model_path
from eelsprint.exceptions import ConfigError, InputDataError, OutputError
from eelsprint.scale.store import classify_to_store, local_runner
from tests.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def small() -> SimulatedSeries:
    """Four frames of 20 x 24 pixels of 240 channels (1,920 spectra, 1.8 MB in float32)."""
    return simulate_series(n_frames=4, shape=(20, 24), seed=3)


@pytest.fixture(scope="module")
def zarr_input(small: SimulatedSeries, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small`` as a Zarr store with arrays ``x`` (float32, stored a row at a time) and ``energy``."""
    path = tmp_path_factory.mktemp("scale") / "series.zarr"
    data = small.spectra.data.astype(np.float32)
    xr.Dataset({"x": (("f", "y", "x", "e"), data), "energy": ("e", small.spectra.energy)}).to_zarr(
        path, consolidated=False, encoding={"x": {"chunks": (1, 1, 24, 240)}}
    )
    return path


def _reference(clf: FingerprintClassifier, small: SimulatedSeries, mode: str) -> xr.Dataset:
    """The in-memory result of the very spectra the lazy path reads (float32 on disk)."""
    return clf.classify(small.spectra.data.astype(np.float32), energy=small.spectra.energy, mode=mode)


#: Chunked against in-memory results: float32 batches of other sizes round differently. Measured with
#: the shipped model: up to 4.9e-6 in probability, 1.5e-5 nats in entropy and 6.5e-5 in the encoder's
#: share of the latent-function variance (a difference of two float32 sums; relative 6e-4); below
#: 1e-6 everywhere with the GP on clean latents, whose class functions are flatter.
CHUNK_ATOL = 1e-4


def _assert_same(got: xr.Dataset, ref: xr.Dataset, atol: float) -> None:
    assert set(got.data_vars) == set(ref.data_vars)
    assert list(got["class"].values) == list(ref["class"].values)
    for name, var in ref.data_vars.items():
        assert got[name].dims == var.dims, name
        np.testing.assert_allclose(got[name].values, var.values, rtol=0, atol=atol, err_msg=name)


# --------------------------------------------------------------------------- chunk plans, lazy input


@pytest.mark.parametrize(
    ("nav", "target"), [((100, 256, 256), 100 * 2**20), ((7, 13), 3000), ((5,), 1), ((3, 4, 5), 10**9)]
)
def test_chunks_split_navigation_only_and_respect_the_size(nav: tuple[int, ...], target: int) -> None:
    spectrum = 2048 * 4
    chunks = nav_chunks(nav, spectrum, target)
    assert len(chunks) == len(nav) and all(1 <= c <= n for c, n in zip(chunks, nav, strict=True))
    assert math.prod(chunks) * spectrum <= max(target, spectrum)  # at least one spectrum per chunk
    lazy = LazySpectra(np.zeros((*nav[-2:], 4), np.float32), np.arange(4.0)).rechunk(target)
    assert lazy.data.chunks[-1] == (4,)  # every spectrum whole in one chunk


def test_lazy_files_read_what_the_eager_reader_reads(small: SimulatedSeries, tmp_path: Path) -> None:
    x, energy = small.spectra.data.astype(np.float32), small.spectra.energy
    np.savez(tmp_path / "plain.npz", x=x, energy=energy)
    np.savez_compressed(
        tmp_path / "packed.npz", x=x.reshape(-1, 240), energy=energy, shape=np.array(x.shape[:-1])
    )
    xr.Dataset({"x": (("f", "y", "x", "e"), x), "energy": ("e", energy)}).to_netcdf(
        tmp_path / "series.nc", engine="h5netcdf"
    )
    for name in ("plain.npz", "packed.npz", "series.nc"):
        lazy = open_spectra(tmp_path / name, chunk_bytes=50_000)
        assert lazy.nav_shape == (4, 20, 24) and len(lazy.regions()) > 4
        joined = np.concatenate([lazy.block(r).flat() for r in lazy.regions()])
        order = np.arange(x[..., 0].size).reshape(x.shape[:-1])  # regions in C order of chunks
        rows = np.concatenate([order[r].ravel() for r in lazy.regions()])
        np.testing.assert_array_equal(joined, x.reshape(-1, 240)[rows])
    assert isinstance(open_array_file(tmp_path / "plain.npz")[0], np.memmap)  # uncompressed: not read


def test_lazy_chunk_with_nan_names_the_file(tmp_path: Path) -> None:
    x = np.ones((6, 10, 40), np.float32)
    x[4, 3, 7] = np.nan
    np.savez(tmp_path / "holey.npz", x=x, energy=np.linspace(100, 140, 40))
    lazy = open_spectra(tmp_path / "holey.npz", chunk_bytes=400 * 4)
    lazy.block(lazy.regions()[0])  # a clean chunk reads
    with pytest.raises(InputDataError, match=r"holey\.npz: 1 non-finite"):
        list(lazy.blocks())


@pytest.mark.skipif(not REAL.is_dir(), reason="shared real data absent")
@pytest.mark.parametrize(
    "name",
    [
        "cu_l23/CuO.dm4",
        "cu_l23/Cu2O.dm4",
        "cu_l23/Cu_metal.dm4",
        "lsmo/LSMO_linescan.hspy",
        "crl/Cr_L_cl.hspy",
    ],
)
def test_real_files_load_lazily(name: str) -> None:
    path = REAL / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    import dask.array as da

    lazy = open_spectra(path, chunk_bytes=4096)
    eager = read_spectra(path)
    assert isinstance(lazy.data, da.Array) and lazy.nav_shape == eager.nav_shape
    np.testing.assert_array_equal(lazy.energy, eager.energy)
    whole = np.concatenate([lazy.block(r).data.reshape(-1, lazy.n_channels) for r in lazy.regions()])
    np.testing.assert_allclose(whole, eager.data.reshape(-1, eager.n_channels), rtol=0, atol=0)


def _zspy_from_hspy(hspy: Path, zspy: Path) -> None:
    """Copy a HyperSpy ``.hspy`` tree into a ``.zspy`` (Zarr format 2, as HyperSpy writes it).

    rosettasciio 0.15 writes ``.zspy`` with zarr-2 APIs that zarr 3 no longer has, so the file is
    made here from the same groups, arrays and attributes.
    """
    import h5py
    import zarr

    def plain(value: object) -> object:
        if isinstance(value, bytes):
            return value.decode()
        if isinstance(value, np.ndarray):
            return [plain(v) for v in value.tolist()]
        return value.item() if isinstance(value, np.generic) else value

    nodes: list[tuple[str, dict[str, object], np.ndarray | None, tuple[int, ...] | None]] = []

    def collect(name: str, node: h5py.Group | h5py.Dataset) -> None:
        attrs = {k: plain(v) for k, v in node.attrs.items()}
        data = node[...] if isinstance(node, h5py.Dataset) else None
        nodes.append((name, attrs, data, getattr(node, "chunks", None)))

    with h5py.File(hspy) as h5:  # read all first: Zarr's thread must not run inside h5py's lock
        top = {k: plain(v) for k, v in h5.attrs.items()}
        h5.visititems(collect)
    root = zarr.open_group(zspy, mode="w", zarr_format=2)
    root.attrs.update(top)
    for name, attrs, data, chunks in nodes:
        if data is None:
            root.require_group(name).attrs.update(attrs)
        else:
            array = root.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks or data.shape)
            array[...] = data
            array.attrs.update(attrs)


def test_zspy_loads_lazily(small: SimulatedSeries, tmp_path: Path) -> None:
    import dask.array as da
    import hyperspy.api as hs

    signal = hs.signals.Signal1D(small.spectra.data[:2].astype(np.float32))
    axis = signal.axes_manager.signal_axes[0]
    axis.offset, axis.scale, axis.units = float(small.spectra.energy[0]), 0.25, "eV"
    signal.save(tmp_path / "s.hspy")
    _zspy_from_hspy(tmp_path / "s.hspy", tmp_path / "s.zspy")
    lazy = open_spectra(tmp_path / "s.zspy", chunk_bytes=20_000)
    eager = read_spectra(tmp_path / "s.hspy")
    assert isinstance(lazy.data, da.Array) and lazy.nav_shape == (2, 20, 24) and len(lazy.regions()) > 2
    np.testing.assert_array_equal(lazy.energy, eager.energy)
    whole = np.concatenate([lazy.block(r).data.reshape(-1, 240) for r in lazy.regions()])
    order = np.concatenate([np.arange(960).reshape(2, 20, 24)[r].ravel() for r in lazy.regions()])
    np.testing.assert_array_equal(whole, eager.data.reshape(-1, 240)[order])


# --------------------------------------------------------------------------- chunked classification


@pytest.mark.parametrize("mode", ["fast", "head"])
def test_chunked_store_matches_in_memory(
    shipped: FingerprintClassifier, small: SimulatedSeries, zarr_input: Path, tmp_path: Path, mode: str
) -> None:
    lazy = open_spectra(zarr_input, chunk_bytes=60_000)  # 2 rows of 24 spectra per chunk: 40 chunks
    run = classify_to_store(shipped, lazy, tmp_path / "r.zarr", mode=mode, progress=False)
    assert (run.n_chunks, run.computed, run.n_spectra) == (len(lazy.regions()), run.n_chunks, 1920)
    got = read_result_store(tmp_path / "r.zarr").load()
    _assert_same(got, _reference(shipped, small, mode), atol=CHUNK_ATOL)
    assert got.attrs["encoder_id"] == shipped.encoder_id_ and got.attrs["integration"] == mode


def test_stored_chunks_are_read_once_and_classified_in_batches(
    shipped: FingerprintClassifier, small: SimulatedSeries, tmp_path: Path
) -> None:
    from eelsprint.scale.store import classify_values

    data = small.spectra.data.astype(np.float32)
    path = tmp_path / "big-chunks.zarr"  # stored chunks of 2 x 10 x 24 spectra (460 kB), compressed
    xr.Dataset({"x": (("f", "y", "x", "e"), data), "energy": ("e", small.spectra.energy)}).to_zarr(
        path, consolidated=False, encoding={"x": {"chunks": (2, 10, 24, 240)}}
    )
    lazy = open_spectra(path, chunk_bytes=60_000)  # smaller than a stored chunk: one stored chunk each
    assert lazy.stored == (2, 10, 24) and lazy.data.chunks[:-1] == ((2, 2), (10, 10), (24,))
    assert open_spectra(path, chunk_bytes=10**6).data.chunks[:-1] == ((2, 2), (20,), (24,))  # 2 of them
    parts = list(lazy.blocks(batch_bytes=60_000))  # 2 rows of a frame (46 kB) at a time, each chunk read once
    assert len(parts) == 4 * 10 and all(b.data.shape[:-1] == (1, 2, 24) for _, b in parts)
    order = np.arange(1920).reshape(4, 20, 24)
    np.testing.assert_array_equal(
        np.sort(np.concatenate([order[r].ravel() for r, _ in parts])), np.arange(1920)
    )
    for region, block in parts:
        np.testing.assert_array_equal(block.data, data[region])

    whole = classify_values(shipped, data[:2, :10], small.spectra.energy, "s", "fast")
    batched = classify_values(shipped, data[:2, :10], small.spectra.energy, "s", "fast", batch_bytes=30_000)
    # noise_vs_fit is a median over the spectra classified together: the first batch's here
    assert batched.attrs.pop("noise_vs_fit") == pytest.approx(whole.attrs.pop("noise_vs_fit"), rel=0.05)
    xr.testing.assert_identical(batched.drop_vars("ood_score"), whole.drop_vars("ood_score"))  # attrs kept
    np.testing.assert_allclose(batched["ood_score"], whole["ood_score"], rtol=0, atol=1e-9)  # rounding
    run = classify_to_store(
        shipped, lazy, tmp_path / "r.zarr", runner=local_runner(shipped, lazy, "fast", batch_bytes=60_000),
        progress=False,
    )  # fmt: skip
    assert run.n_chunks == 4
    got = read_result_store(tmp_path / "r.zarr").load()
    _assert_same(got, _reference(shipped, small, "fast"), atol=CHUNK_ATOL)


def test_interrupted_store_resumes_to_the_clean_result(
    shipped: FingerprintClassifier, zarr_input: Path, tmp_path: Path
) -> None:
    lazy = open_spectra(zarr_input, chunk_bytes=60_000)
    clean = classify_to_store(shipped, lazy, tmp_path / "clean.zarr", progress=False)
    base = local_runner(shipped, lazy, "fast")

    def crashing(todo: list) -> object:  # the process dies after writing 5 chunks
        for n, item in enumerate(base(todo)):
            if n == 5:
                raise KeyboardInterrupt
            yield item

    with pytest.raises(KeyboardInterrupt):
        classify_to_store(shipped, lazy, tmp_path / "r.zarr", runner=crashing, progress=False)
    assert int(done_chunks(tmp_path / "r.zarr").sum()) == 5
    with pytest.raises(InputDataError, match="incomplete, 5 of 40 chunks.*--resume"):
        read_result_store(tmp_path / "r.zarr")
    again = classify_to_store(shipped, lazy, tmp_path / "r.zarr", resume=True, progress=False)
    assert (again.computed, again.skipped) == (clean.n_chunks - 5, 5)
    xr.testing.assert_identical(
        read_result_store(tmp_path / "r.zarr").load(), read_result_store(tmp_path / "clean.zarr").load()
    )
    finished = classify_to_store(shipped, lazy, tmp_path / "r.zarr", resume=True, progress=False)
    assert finished.computed == 0  # a complete store: nothing to do


def test_resume_refuses_other_settings(
    shipped: FingerprintClassifier, rel_env: dict[str, Path], zarr_input: Path, tmp_path: Path
) -> None:
    lazy = open_spectra(zarr_input, chunk_bytes=60_000)
    classify_to_store(shipped, lazy, tmp_path / "r.zarr", progress=False)
    with pytest.raises(OutputError, match=r"r\.zarr: cannot resume.*integration 'fast' \(now 'head'\)"):
        classify_to_store(shipped, lazy, tmp_path / "r.zarr", mode="head", resume=True, progress=False)
    with pytest.raises(OutputError, match="cannot resume.*chunks"):
        classify_to_store(shipped, lazy.rechunk(30_000), tmp_path / "r.zarr", resume=True, progress=False)
    other = FingerprintClassifier.load(rel_env["model"], progress=False)  # fitted on other data
    with pytest.raises(OutputError, match="cannot resume.*model_id"):
        classify_to_store(other, lazy, tmp_path / "r.zarr", resume=True, progress=False)


def test_resume_keeps_the_store_layout_whatever_the_memory_now(
    shipped: FingerprintClassifier, zarr_input: Path, tmp_path: Path
) -> None:
    from eelsprint.scale.run import ScaleOptions, classify_file

    target = tmp_path / "r.zarr"
    first, _ = classify_file(shipped, zarr_input, target, ScaleOptions(chunk_bytes=60_000), progress=False)
    assert first.n_chunks == 40
    again, counts = classify_file(  # other chunk size (or memory limit) on resume: the store's layout
        shipped, zarr_input, target, ScaleOptions(chunk_bytes=30_000, resume=True), progress=False
    )
    assert (again.n_chunks, again.computed, again.skipped) == (40, 0, 40) and counts.sum() == 1920


def test_two_worker_cluster_matches_in_memory(
    shipped: FingerprintClassifier, small: SimulatedSeries, zarr_input: Path, tmp_path: Path
) -> None:
    from distributed import Client, LocalCluster

    from eelsprint.scale.cluster import cluster_runner

    lazy = open_spectra(zarr_input, chunk_bytes=120_000)
    with (
        # In-process workers share this process's memory: a per-worker memory limit would compare the
        # whole test session's RSS with it and pause the workers (a hang seen in CI), so none is set.
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, memory_limit=0, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        runner = cluster_runner(client, shipped, lazy, "fast")
        run = classify_to_store(shipped, lazy, tmp_path / "r.zarr", runner=runner, progress=False)
    assert run.computed == run.n_chunks == len(lazy.regions())
    got = read_result_store(tmp_path / "r.zarr").load()
    _assert_same(got, _reference(shipped, small, "fast"), atol=CHUNK_ATOL)


# --------------------------------------------------------------------------- command line


def _cli_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["classify", str(data), "--model", str(default_model_path()), "--out", str(out), *extra]


def test_cli_killed_mid_run_resumes_to_the_clean_store(
    zarr_input: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _cli_args(zarr_input, tmp_path / "clean", "--format", "zarr", "--chunk-size", "24KB")
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "1920 spectra" in out and "series.zarr" in out
    store = tmp_path / "killed" / "series.zarr"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-c",
        "from eelsprint.cli import main; main()",
        *_cli_args(zarr_input, tmp_path / "killed", "--format", "zarr", "--chunk-size", "24KB"),
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recorded = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            recorded = int(done_chunks(store).sum())
        except Exception:  # not created yet
            recorded = 0
        if recorded >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    left = int(done_chunks(store).sum())
    assert 3 <= left < done_chunks(store).size
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        *_cli_args(zarr_input, tmp_path / "killed", "--format", "zarr", "--chunk-size", "24KB", "--resume"),
    )
    assert code == 0, err
    assert f"of {done_chunks(store).size} chunks computed now" in out
    xr.testing.assert_identical(
        read_result_store(store).load(), read_result_store(tmp_path / "clean" / "series.zarr").load()
    )


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (("--resume",), "add --format zarr"),
        (("--format", "hdf"), "--format must be 'netcdf' or 'zarr'"),
        (("--format", "zarr", "--chunk-size", "lots"), "--chunk-size 'lots'"),
        pytest.param(  # waits 10 s for the scheduler
            ("--format", "zarr", "--scheduler", "tcp://127.0.0.1:1"),
            "cannot connect to a Dask scheduler",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_cli_bad_scale_options_one_line(
    zarr_input: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...], match: str,
) -> None:  # fmt: skip
    code, _, err = run_cli(monkeypatch, capsys, *_cli_args(zarr_input, tmp_path / "out", *extra))
    assert code == 1 and err.count("\n") == 1 and match in err, err


def test_cli_refuses_a_foreign_folder_in_place_of_the_store(
    zarr_input: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out" / "series.zarr").mkdir(parents=True)
    (tmp_path / "out" / "series.zarr" / "notes.txt").write_text("mine")
    code, _, err = run_cli(
        monkeypatch, capsys, *_cli_args(zarr_input, tmp_path / "out", "--format", "zarr", "--resume")
    )
    assert code == 1 and "series.zarr: exists and is not a result store" in err, err
    assert (tmp_path / "out" / "series.zarr" / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- training on large data


def test_fit_on_chunks_reads_every_spectrum_and_subsamples_by_frame(series: SimulatedSeries) -> None:
    from eelsprint.config import Config
    from eelsprint.data.preprocess import pca_denoise
    from eelsprint.scale.train import stream_inputs

    lazy = LazySpectra(series.spectra.data.astype(np.float32), series.spectra.energy, "s").rechunk(50_000)
    cfg = Config()
    pca, seen, sample = stream_inputs(lazy, series.library, cfg, 601)
    assert len(lazy.regions()) == 57 and seen == 1710  # every chunk of 3 x 19 x 30 spectra
    assert sample.flat().shape == (601, 240)
    where = {r.tobytes(): i for i, r in enumerate(series.spectra.data.reshape(-1, 240).astype(np.float32))}
    index = np.array(
        [where[r.astype(np.float32).tobytes()] for r in sample.flat()]
    )  # KeyError: not the file's
    assert np.all(np.diff(index) > 0)  # distinct spectra, in file order
    assert sorted(np.bincount(index // 570)) == [200, 200, 201]  # stratified by frame (570 pixels each)
    x = series.spectra.data.reshape(-1, 240)
    target = pca.inverse_transform(pca.transform(x))
    reference = pca_denoise(x, cfg.preprocess.pca_components, seed=0)  # the in-memory target
    clean = series.clean.reshape(-1, 240)
    ours, theirs, raw = (float(np.linalg.norm(t - clean)) for t in (target, reference, x))
    assert ours < 1.05 * theirs and ours < 0.5 * raw  # as good as the in-memory PCA: measured 32.9, 33.5, 102


@pytest.mark.slow
def test_fit_large_learns(series: SimulatedSeries, held_out: SimulatedSeries) -> None:
    from eelsprint.scale.train import fit_large
    from tests.conftest import QUICK

    lazy = LazySpectra(series.spectra.data.astype(np.float32), series.spectra.energy, "s").rechunk(50_000)
    result = fit_large(lazy, series.library, QUICK, n_subsample=900)
    assert (result.n_spectra, result.n_seen, result.n_subsample) == (1710, 1710, 900)
    truth = held_out.labels
    predicted = result.model.predict(held_out.spectra)
    known = truth >= 0
    accuracy = float((predicted[known] == series.classes[truth[known]]).mean())
    assert accuracy > 0.9, accuracy  # measured 0.963 (900 spectra trained on, PCA target over all 1,710)


def test_memory_limit_sizes_the_chunks() -> None:
    from eelsprint.exceptions import ConfigError
    from eelsprint.scale.run import MEMORY_FIXED, MEMORY_PER_BATCH, MEMORY_PER_READ, chunk_bytes_for

    mb = 2**20
    assert chunk_bytes_for(100 * mb, None) == 100 * mb
    assert chunk_bytes_for(100 * mb, 2048 * mb, in_use=400 * mb) == 100 * mb
    room = 750 * mb - 400 * mb - MEMORY_FIXED
    batch = room // (MEMORY_PER_READ + MEMORY_PER_BATCH)  # chunks read are batches
    assert chunk_bytes_for(100 * mb, 750 * mb, in_use=400 * mb) == batch < 100 * mb
    assert chunk_bytes_for(100 * mb, 750 * mb, in_use=400 * mb, stored_bytes=batch) == batch
    stored = 30 * mb  # a compressed chunk larger than a batch is read whole, then classified in batches
    expected = (room - MEMORY_PER_READ * stored) // MEMORY_PER_BATCH
    assert chunk_bytes_for(100 * mb, 750 * mb, in_use=400 * mb, stored_bytes=stored) == expected < batch
    with pytest.raises(ConfigError, match="--memory-limit 450 MB leaves no room.*holds 419 MB"):
        chunk_bytes_for(100 * mb, 450_000_000, in_use=400 * mb)
    with pytest.raises(ConfigError, match="reads chunks of 126 MB whole"):
        chunk_bytes_for(100 * mb, 750 * mb, in_use=400 * mb, stored_bytes=120 * mb)


@pytest.mark.slow
def test_scale_bench_runs_with_tiny_arguments(tmp_path: Path) -> None:
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("scale_bench", ROOT / "evaluation" / "scale_bench.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--frames", "3", "--shape", "8,10", "--in-memory-frames", "2", "--memory-limit", "2GB"]
    out = tmp_path / "bench.json"
    result = bench.main([*args, "--fit-subsample", "100", "--fit-epochs", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["series"]["n_spectra"] == 240 and result["out_of_core"]["n_spectra"] == 240
    assert result["in_memory"]["n_spectra"] == 160 and result["max_abs_diff"] < 1e-6  # measured 0
    assert result["fit"]["n_seen_by_pca"] == 240 and result["fit"]["n_subsample"] == 100
    assert 0 < result["out_of_core"]["peak_rss_mb"] < 2048


def test_cli_fit_subsample_takes_one_file(
    zarr_input: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = tmp_path / "lib.npz"
    s = simulate_series(n_frames=1, shape=(4, 5), seed=1)
    np.savez(lib, spectra=s.library.spectra, energy=s.library.energy, labels=s.library.labels)
    args = ["fit", str(zarr_input), str(zarr_input), "--library", str(lib), "--out", str(tmp_path / "m")]
    code, _, err = run_cli(monkeypatch, capsys, *args, "--subsample", "100")
    assert code == 1 and err.count("\n") == 1 and "--subsample reads one DATA file" in err, err


@pytest.mark.slow
def test_worker_killed_mid_run_then_resume_gives_the_clean_store(
    shipped: FingerprintClassifier, zarr_input: Path, tmp_path: Path
) -> None:
    from distributed import Client, LocalCluster

    from eelsprint.scale.cluster import cluster_runner

    lazy = open_spectra(zarr_input, chunk_bytes=60_000)
    classify_to_store(shipped, lazy, tmp_path / "clean.zarr", progress=False)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        pids = client.run(os.getpid)
        inner = cluster_runner(client, shipped, lazy, "fast", in_flight=2)

        def killing(todo: list) -> object:  # one worker process is SIGKILLed after 3 chunks
            for n, item in enumerate(inner(todo)):
                if n == 3:
                    os.kill(next(iter(pids.values())), signal.SIGKILL)
                yield item

        try:
            classify_to_store(shipped, lazy, tmp_path / "r.zarr", runner=killing, progress=False)
        except Exception:  # the scheduler may give up on the lost tasks: resume finishes them
            pass
        recorded = int(done_chunks(tmp_path / "r.zarr").sum())
        assert recorded >= 4
        if recorded < len(lazy.regions()):
            runner = cluster_runner(client, shipped, lazy, "fast")
            classify_to_store(shipped, lazy, tmp_path / "r.zarr", resume=True, runner=runner, progress=False)
    resumed = read_result_store(tmp_path / "r.zarr").load()
    clean = read_result_store(tmp_path / "clean.zarr").load()
    # Worker processes run one thread each (this process two): float32 rounds differently.
    xr.testing.assert_allclose(resumed, clean, rtol=0, atol=CHUNK_ATOL)
    assert resumed.attrs.keys() == clean.attrs.keys()
    assert resumed.attrs["encoder_id"] == clean.attrs["encoder_id"]


def test_a_cluster_of_paused_workers_stops_with_one_line(
    shipped: FingerprintClassifier, zarr_input: Path, tmp_path: Path
) -> None:
    """A worker over its memory pause threshold runs nothing: the run says so instead of hanging
    (an in-process worker with a 50 MB limit measures this whole process and pauses at once; when it
    pauses before the model is scattered, distributed's scatter times out after ~30 s, else the stall
    check fires after 1 s)."""
    from distributed import Client, LocalCluster

    from eelsprint.scale.cluster import cluster_runner

    lazy = open_spectra(zarr_input, chunk_bytes=120_000)
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, memory_limit="50MB", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        runner = cluster_runner(client, shipped, lazy, "fast", stall_s=1.0)
        start = time.monotonic()
        with pytest.raises(ConfigError, match=r"all 1 workers are paused .* rerun with --resume$"):
            classify_to_store(shipped, lazy, tmp_path / "r.zarr", runner=runner, progress=False)
        assert time.monotonic() - start < 60
