import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


class _Storage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _crafted_pth(path, tensors, storage_values=16, declared=None):
    """A zip-format ``.pth`` whose tensors state any size, stride and offset over one storage of
    ``storage_values`` floats, pickled with PyTorch's own rebuilder names (as
    ``torch._utils._rebuild_tensor_v2`` is called by ``torch.load``)."""
    import collections
    import io
    import zipfile

    import torch

    storage = _Storage("0", storage_values if declared is None else declared)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
            return None

        def reducer_override(self, obj):
            if isinstance(obj, _Tensor):
                return (torch._utils._rebuild_tensor_v2,
                        (obj.storage, obj.offset, obj.size, obj.stride, False,
                         collections.OrderedDict()))
            return NotImplemented

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(collections.OrderedDict(
        (name, _Tensor(storage, *view)) for name, view in tensors.items()))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buffer.getvalue())
        z.writestr("archive/data/0", np.arange(storage_values, dtype="<f4").tobytes())
    return str(path)


def test_crafted_views_never_read_outside_their_storage(tmp_path):
    # The repro of issue 33 (fault 4): 16 floats, a tensor of size (1e8,) and stride (-1,) made
    # as_strided read process memory (garbage weights or a segfault); (60000, 60000) with
    # stride (0, 0) from a 1.7 KB file asked for 13.4 GiB.
    cases = {
        "negative stride": (((0, (100_000_000,), (-1,))), "negative size, stride or offset"),
        "broadcast": ((0, (60000, 60000), (0, 0)), r"3,600,000,000 elements but its storage "
                                                   r"holds 16 \(a broadcast view\)"),
        "past the end": ((10, (4, 2), (2, 1)), "reaches element 17 of a storage of 16"),
        "negative offset": ((-4, (4,), (1,)), "negative size, stride or offset"),
        "negative size": ((0, (-3,), (1,)), "negative size, stride or offset"),
        "float size": ((0, (4.0,), (1,)), r"size is \(4.0,\), not a tuple"),
        "rank mismatch": ((0, (4, 4), (1,)), r"size \(4, 4\) has strides \(1,\)"),
        "too many dims": ((0, (1,) * 40, (1,) * 40), "at most 16 integers"),
    }
    for name, (view, match) in cases.items():
        path = _crafted_pth(tmp_path / f"{name}.pth", {"w": view})
        with pytest.raises(PthError, match=match):
            load_state_dict(path)
    with pytest.raises(PthError, match="holds 64 bytes, not the 32 elements"):
        load_state_dict(_crafted_pth(tmp_path / "declared.pth", {"w": (0, (4,), (1,))},
                                     declared=32))
    # Legitimate views read back what PyTorch would: a transposed, offset and strided view.
    good = load_state_dict(_crafted_pth(tmp_path / "ok.pth", {
        "t": (0, (4, 4), (1, 4)), "o": (3, (5,), (2,)), "s": (15, (), ()), "e": (0, (0, 7), (7, 1))}))
    data = np.arange(16, dtype=np.float32)
    np.testing.assert_array_equal(good["t"], data.reshape(4, 4).T)
    np.testing.assert_array_equal(good["o"], data[3:13:2])
    assert good["s"] == 15 and good["e"].shape == (0, 7)


def test_a_truncated_zip_file_says_so(tmp_path):
    good = save_pth({"w": np.ones((64, 64), np.float32)}, tmp_path / "good.pth", "zip")
    data = open(good, "rb").read()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(PthError, match="cut.pth: a zip-format .pth whose end is missing"):
        load_state_dict(str(tmp_path / "cut.pth"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(views=st.dictionaries(
    st.text("abc.", min_size=1, max_size=4),
    st.tuples(st.integers(-3, 40),
              st.lists(st.integers(-2, 1 << 40), max_size=4),
              st.lists(st.integers(-2, 1 << 40), max_size=4)), min_size=1, max_size=3),
    values=st.integers(0, 32))
def test_any_stated_view_reads_inside_the_storage_or_is_refused(tmp_path_factory, views, values):
    """Fuzz: whatever sizes, strides and offsets a file states, the reader returns arrays whose
    every element is one of the storage's values, or refuses with PthError; never more
    elements than the storage holds."""
    folder = tmp_path_factory.mktemp("fuzz")
    path = _crafted_pth(folder / "f.pth", {k: (o, tuple(s), tuple(t)) for k, (o, s, t)
                                             in views.items()}, storage_values=values)
    try:
        loaded = load_state_dict(path)
    except PthError:
        return
    storage = set(np.arange(values, dtype=np.float32).tolist())
    for array in loaded.values():
        assert array.size <= max(values, 1)
        assert set(array.ravel().tolist()) <= storage
