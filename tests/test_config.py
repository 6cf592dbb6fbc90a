import tomllib
from pathlib import Path

import pytest

from eelsprint.config import Config, PreprocessConfig, TrainConfig
from eelsprint.exceptions import ConfigError


def test_defaults_run_no_preprocessing_step() -> None:
    cfg = Config()
    assert cfg.preprocess.window is None
    assert cfg.preprocess.background_window is None
    assert cfg.preprocess.normalise == "none"
    assert cfg.preprocess.pca_components == 10


def test_toml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(
        "[preprocess]\nwindow = [680.0, 730.0]\nbackground_window = [660.0, 675.0]\n"
        "normalise = 'area'\n[train]\nepochs = 7\nseed = 3\n[model]\nlatent_dim = 4\n"
    )
    cfg = Config.from_toml(path)
    assert cfg.preprocess.window == (680.0, 730.0)
    assert cfg.preprocess.normalise == "area"
    assert cfg.train.epochs == 7 and cfg.train.seed == 3
    assert cfg.model.latent_dim == 4
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[preprocess]\nwindow = [730.0, 680.0]\n", "low < high"),
        ("[preprocess]\nnormalise = 'edge'\n", "normalise_window"),
        ("[train]\nepochs = 0\n", "epochs"),
        ("[train]\nlearning = 1\n", "unknown key"),
        ("[nonsense]\nx = 1\n", "unknown section"),
        ("[inference]\nmode = 'slow'\n", "mode"),
        ("[train]\ngp_latents = 'raw'\n", "gp_latents must be one of noisy, clean"),
        ("[nuisance]\nmix_label = 'soft'\n", "mix_label must be one of sampled, dominant"),
        ("this is = = not toml", "not a valid TOML"),
    ],
)
def test_bad_config_names_file_and_problem(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        Config.from_toml(path)
    assert "bad.toml" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Config.from_toml(tmp_path / "absent.toml")


def test_dataclasses_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="rebin"):
        PreprocessConfig(rebin=0)
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig(lr=0.0)


def test_library_section_is_theory_by_default_and_validated() -> None:
    assert Config().library.measured is False
    assert Config.from_dict({"library": {"measured": True}}).library.measured is True
    with pytest.raises(ConfigError, match=r"\[library\] measured must be true or false"):
        Config.from_dict({"library": {"measured": "yes"}})


def test_readme_config_shows_the_defaults() -> None:
    """README's example config: every section but the preprocessing example holds the defaults."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Configuration", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    shown = Config.from_dict(tomllib.loads(block))
    defaults = Config()
    for section in ("library", "nuisance", "model", "train", "inference"):
        assert getattr(shown, section) == getattr(defaults, section), section
