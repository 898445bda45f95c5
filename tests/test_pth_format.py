import pickle

import numpy as np
import pytest

from tf_pix2pix.tools.pth_format import PthError, load_state_dict

from torch_files import save_pth


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_both_formats_read_back_values_dtypes_and_shapes(tmp_path, fmt):
    rng = np.random.default_rng(0)
    state = {"conv.weight": rng.normal(size=(4, 3, 2, 2)).astype(np.float32),
             "conv.bias": np.array([1.5, -2.0, 0.0, 3.0], np.float32),
             "bn.running_var": rng.uniform(size=5).astype(np.float64),
             "bn.num_batches_tracked": np.array(7, np.int64),
             "half": rng.normal(size=(2, 3)).astype(np.float16)}
    loaded = load_state_dict(save_pth(state, tmp_path / f"m_{fmt}.pth", fmt))
    assert list(loaded) == list(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape, key
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


def test_a_pickle_that_calls_anything_else_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"weight": Payload()}, f)
    with pytest.raises(PthError, match="refusing to unpickle io.open"):
        load_state_dict(str(path))
    assert not marker.exists()


def test_truncated_and_foreign_files_are_clear_errors(tmp_path):
    good = save_pth({"w": np.ones((64, 64), np.float32)}, tmp_path / "good.pth", "legacy")
    data = open(good, "rb").read()
    (tmp_path / "cut.pth").write_bytes(data[:-100])
    with pytest.raises(PthError, match="cut.pth: the file ends inside a tensor's data"):
        load_state_dict(str(tmp_path / "cut.pth"))
    (tmp_path / "text.pth").write_bytes(b"hello, not a model")
    with pytest.raises(PthError, match="text.pth: not a readable PyTorch state dict"):
        load_state_dict(str(tmp_path / "text.pth"))
    with open(tmp_path / "list.pth", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(PthError):
        load_state_dict(str(tmp_path / "list.pth"))
