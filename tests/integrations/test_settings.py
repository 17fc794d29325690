from pathlib import Path

import pytest

from integrations.settings import ConfigError, Settings, default_data_dir, load_settings


def test_data_dir_defaults_to_xdg_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOGTRIAGE_DATA_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert load_settings().data_dir == tmp_path / "xdg" / "logtriage"


def test_data_dir_falls_back_to_local_share_without_xdg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_data_dir() == Path.home() / ".local" / "share" / "logtriage"


def test_env_var_overrides_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOGTRIAGE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert load_settings().data_dir == tmp_path / "elsewhere"


def test_toml_file_is_read_and_env_beats_it_and_flags_beat_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "logtriage.toml"
    config.write_text('model_dir = "/from/toml"\nembedding_cache_entries = 77\n')
    assert load_settings(config).embedding_cache_entries == 77
    assert load_settings(config).model_dir == Path("/from/toml")
    monkeypatch.setenv("LOGTRIAGE_MODEL_DIR", "/from/env")
    assert load_settings(config).model_dir == Path("/from/env")
    assert load_settings(config, model_dir=Path("/from/flag")).model_dir == Path("/from/flag")


def test_missing_config_file_is_a_config_error_naming_flag_and_env(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config or LOGTRIAGE_CONFIG"):
        load_settings(tmp_path / "absent.toml")


def test_embedding_cache_lives_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.embedding_cache_path == tmp_path / "cache" / "template_embeddings.sqlite"
    assert Settings(data_dir=tmp_path, persist_embedding_cache=False).embedding_cache_path is None


def test_settings_can_be_built_directly_without_load_settings() -> None:
    from integrations.settings import Settings

    assert Settings().llm_backend == "local"
