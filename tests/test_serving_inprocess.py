import numpy as np
import pytest

from mlsd_lib.serving.inprocess import InProcessModelServer, UnknownModel
from mlsd_lib.serving.tensors import MalformedRequest, TensorSpec, check_inputs

FEATURES = TensorSpec("features", np.float32, (4,))
SCORE = TensorSpec("score", np.float32, (1,))


def row_sums(features: np.ndarray) -> dict[str, np.ndarray]:
    return {"score": features.sum(axis=1, keepdims=True)}


@pytest.fixture
def server():
    with InProcessModelServer("chosen by the test") as server:
        server.bind("sums", row_sums, (FEATURES,), (SCORE,), max_batch_size=8)
        yield server


def test_infer_returns_the_bound_function_outputs(server):
    X = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(
        server.infer("sums", {"features": X})["score"], [[6], [22]]
    )


def test_describe_says_in_process_and_why(server):
    assert (
        server.describe() == "Model server: in-process (no network); chosen by the test"
    )


def test_unknown_model_lists_the_bound_ones(server):
    with pytest.raises(UnknownModel, match=r"'nope' is not bound .*\['sums'\]"):
        server.infer("nope", {"features": np.zeros((1, 4), np.float32)})


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"features": np.zeros((2, 4), np.float64)},
            r"dtype float64.*astype\(np.float32\)",
        ),
        ({"features": np.zeros((2, 5), np.float32)}, r"shape \(2, 5\).*\(batch, 4\)"),
        ({"features": np.zeros(4, np.float32)}, r"shape \(4,\)"),
        (
            {"feature": np.zeros((2, 4), np.float32)},
            r"\['feature'\] do not match .*\['features'\]",
        ),
    ],
)
def test_malformed_requests_say_what_is_wrong(server, inputs, message):
    with pytest.raises(MalformedRequest, match=message):
        server.infer("sums", inputs)


def test_inputs_must_share_a_batch_size():
    specs = (TensorSpec("a", np.float32, (1,)), TensorSpec("b", np.float32, (1,)))
    with pytest.raises(MalformedRequest, match="batch size"):
        check_inputs(
            specs,
            {"a": np.zeros((2, 1), np.float32), "b": np.zeros((3, 1), np.float32)},
        )


def test_variable_length_dimensions_accept_any_size():
    spec = TensorSpec("tokens", np.int64, (-1,))
    spec.check(np.zeros((2, 7), np.int64))
    spec.check(np.zeros((2, 1), np.int64))


def test_max_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="max_batch_size"):
        InProcessModelServer().bind(
            "m", row_sums, (FEATURES,), (SCORE,), max_batch_size=0
        )
