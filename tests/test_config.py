from pathlib import Path

import pytest

from mlsd_lib.config import ConfigError, load_settings


def test_defaults_when_nothing_is_set():
    settings = load_settings({})
    assert settings.redis_url is None
    assert settings.triton_url is None
    assert settings.require_real_backends is False
    assert settings.seed == 0
    assert settings.data_dir == Path("data")


def test_reads_every_variable():
    settings = load_settings(
        {
            "REDIS_URL": " redis://127.0.0.1:6390/2 ",
            "TRITON_URL": "grpc://127.0.0.1:8001",
            "MLSD_REQUIRE_REAL_BACKENDS": "Yes",
            "MLSD_SEED": "42",
            "MLSD_DATA_DIR": "/tmp/mlsd-data",
        }
    )
    assert settings.redis_url == "redis://127.0.0.1:6390/2"
    assert settings.triton_url == "grpc://127.0.0.1:8001"
    assert settings.require_real_backends is True
    assert settings.seed == 42
    assert settings.data_dir == Path("/tmp/mlsd-data")


def test_empty_redis_url_means_unset():
    assert load_settings({"REDIS_URL": "  "}).redis_url is None


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"REDIS_URL": "localhost:6379"}, ["REDIS_URL", "redis://"]),
        ({"TRITON_URL": "127.0.0.1:8000"}, ["TRITON_URL", "http://"]),
        ({"MLSD_SEED": "zero"}, ["MLSD_SEED", "integer"]),
        ({"MLSD_SEED": "-1"}, ["MLSD_SEED must be an integer >= 0 (got -1)"]),
        (
            {"MLSD_REQUIRE_REAL_BACKENDS": "maybe"},
            ["MLSD_REQUIRE_REAL_BACKENDS", "yes/no"],
        ),
    ],
)
def test_malformed_values_name_the_variable_and_the_fix(env, names):
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    for name in names:
        assert name in str(error.value)
