"""Config: one TOML file, every value checked where it enters, with the value named."""

import pytest

from ragapp.config import Config

pytestmark = pytest.mark.unit


def test_config_validation_names_the_value():
    from ragapp.config import RetrieveConfig
    from ragapp.errors import ConfigError

    with pytest.raises(ConfigError, match="top_k must be greater than 0. Currently, the top_k is 0"):
        RetrieveConfig(top_k=0)
    with pytest.raises(ConfigError, match="unknown setting"):
        Config.from_dict({"retrieve": {"topk": 3}})
    assert Config.load(None, retrieve__top_k=3).retrieve.top_k == 3


def test_config_file_values_and_overrides(tmp_path):
    from ragapp.errors import ConfigError

    file = tmp_path / "ragapp.toml"
    file.write_text("[split]\nchunk_size = 120\n[prompt]\ndrop_below_threshold = false\n", encoding="utf-8")
    config = Config.load(str(file), split__chunk_overlap=10)
    assert (config.split.chunk_size, config.split.chunk_overlap, config.prompt.drop_below_threshold) == (120, 10, False)
    with pytest.raises(ConfigError, match="chunk_overlap must be >= 0 and < chunk_size \\(120\\)"):
        Config.load(str(file), split__chunk_overlap=120)
