import numpy as np
import pytest
import torch

from harness.core.errors import InputError
from harness.core.model import LSTMPredictor, ModelConfig, validate_input


def test_predictor_has_the_seed_architecture():
    m = LSTMPredictor()
    assert (m.lstm.input_size, m.lstm.hidden_size, m.lstm.num_layers) == (1, 64, 1)
    assert m.lstm.batch_first and (m.fc.in_features, m.fc.out_features) == (64, 1)
    assert m(torch.zeros(3, 50, 1)).shape == (3, 1)


def test_sizes_are_configurable():
    m = LSTMPredictor(ModelConfig(input_size=3, hidden_size=8, num_layers=2, output_size=2))
    assert m(torch.zeros(5, 7, 3)).shape == (5, 2)


def test_the_notebook_10d_mistake_gets_a_clear_message():
    x = np.zeros((4, 50, 1), np.float32)
    for _ in range(7):  # the re-run cell that unsqueezes once more each time
        x = x[np.newaxis]
    with pytest.raises(InputError) as err:
        validate_input(x, input_size=1)
    msg = str(err.value)
    assert "10-D" in msg and "(batch>=1, seq_len>=1, input_size=1)" in msg
    assert str((1,) * 7 + (4, 50, 1)) in msg


@pytest.mark.parametrize("shape, fragment", [
    ((50, 1), "2-D"),
    ((4, 50, 3), "got shape (4, 50, 3)"),
    ((0, 50, 1), "got shape (0, 50, 1)"),
    ((4, 0, 1), "got shape (4, 0, 1)"),
])
def test_wrong_shapes_name_expected_and_actual(shape, fragment):
    with pytest.raises(InputError, match="expected") as err:
        validate_input(np.zeros(shape, np.float32), input_size=1)
    assert fragment in str(err.value)


def test_non_finite_and_non_float_inputs_are_refused():
    x = np.zeros((2, 5, 1), np.float32)
    x[1, 2, 0] = np.nan
    with pytest.raises(InputError, match="1 NaN/Inf"):
        validate_input(x, 1)
    with pytest.raises(InputError, match="floating-point"):
        validate_input(np.zeros((2, 5, 1), np.int64), 1)
    with pytest.raises(InputError, match="list"):
        validate_input([[[0.0]]], 1)


def test_valid_inputs_pass_through_including_tensors():
    x = np.ones((2, 5, 1), np.float32)
    assert validate_input(x, 1) is x
    np.testing.assert_array_equal(validate_input(torch.ones(2, 5, 1), 1), x)
