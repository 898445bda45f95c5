"""Reading PyTorch ``.pth`` state dicts as numpy arrays, without PyTorch and without trusting them.

A ``.pth`` file is a pickle, and unpickling runs whatever callables the file names, so a
downloaded one is never given to ``pickle.load``. This module's unpickler resolves only the names
a state dict of tensors needs — ``collections.OrderedDict``, PyTorch's tensor-rebuilding
functions and its typed storage classes — to local stand-ins that build numpy arrays; any other
global (``os.system``, ``builtins.eval``, a model class, ...) is refused with
:class:`PthError` before anything runs.

Both file formats are read:

* the zip format of PyTorch >= 1.6: ``<name>/data.pkl`` plus one raw file per storage
  (``<name>/data/<key>``);
* the legacy format: a sequence of pickles (magic number, protocol, system info, the object, the
  storage keys) followed by each storage as an 8-byte element count and its raw bytes.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# PyTorch's storage classes and the numpy dtypes of their elements (little-endian).
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class PthError(ValueError):
    """The file is not a readable state dict, or it asks to run code that is not allowed."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]
        if self.dtype is None:
            raise PthError(f"{name} tensors are not supported; save the weights as float32")


class _Storage:
    """A storage whose bytes arrive now (zip) or after the object pickle (legacy)."""

    def __init__(self, storage_type: _StorageType, numel: int):
        self.dtype = np.dtype(storage_type.dtype).newbyteorder("<")
        self.numel = numel
        self.array: np.ndarray | None = None


MAX_DIMS = 16


def _ints(name: str, values: Any) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > MAX_DIMS or not all(
            type(v) is int for v in values):
        raise PthError(f"a tensor's {name} is {values!r}, not a tuple of at most {MAX_DIMS} "
                       "integers; the file is corrupt or crafted")
    return tuple(values)


class _LazyTensor:
    """A tensor's view of its storage: size, stride and offset as the file states them, which
    are checked against the storage before numpy is asked for any view (a crafted stride or
    offset would otherwise make ``as_strided`` read process memory)."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        if not isinstance(storage, _Storage):
            raise PthError("a tensor's storage is not a storage; the file is corrupt or crafted")
        self.storage, self.offset = storage, offset
        self.size, self.stride = _ints("size", size), _ints("stride", stride)

    def _check(self, available: int) -> None:
        size, stride, offset = self.size, self.stride, self.offset
        if len(size) != len(stride):
            raise PthError(f"a tensor of size {size} has strides {stride}; the file is corrupt")
        if type(offset) is not int or offset < 0 or min(size + stride, default=0) < 0:
            raise PthError(f"a tensor has a negative size, stride or offset (size {size}, "
                           f"stride {stride}, offset {offset!r}); the file is corrupt or crafted")
        count = int(np.prod(size, dtype=object)) if size else 1
        if count == 0:
            return
        last = offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= available:
            raise PthError(f"a tensor of size {size}, stride {stride} and offset {offset} reaches "
                           f"element {last} of a storage of {available}; the file is corrupt")
        if count > available:
            raise PthError(f"a tensor of size {size} has {count:,} elements but its storage "
                           f"holds {available:,} (a broadcast view); save the weights with "
                           "tensor.contiguous() or torch.save(model.state_dict())")

    def materialize(self) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise PthError("a tensor refers to storage data missing from the file")
        self._check(data.size)
        if self.size and min(self.size) == 0:
            return np.zeros(self.size, data.dtype)
        if not self.size:  # a scalar (as_strided would read shape () as "unchanged")
            return np.array(data[self.offset])
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size,
            strides=[s * data.itemsize for s in self.stride], writeable=False)
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage], load_storage=None):
        super().__init__(file)
        self._storages = storages
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise PthError(f"refusing to unpickle {module}.{name}: a state dict of tensors needs "
                       "only OrderedDict and PyTorch's tensor and storage rebuilders")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise PthError(f"unexpected persistent id {pid!r}")
        if len(pid) < 5 or type(pid[4]) is not int or pid[4] < 0:
            raise PthError(f"unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), pid[4]
        if not isinstance(storage_type, _StorageType):
            raise PthError(f"unexpected storage type {storage_type!r}")
        if key not in self._storages:
            storage = _Storage(storage_type, numel)
            if self._load_storage is not None:
                storage.array = self._load_storage(key, storage)
            self._storages[key] = storage
        return self._storages[key]


def _materialize(obj: Any) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise PthError(f"the file holds a {type(obj).__name__}, not a state dict")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    result = {}
    for key, value in obj.items():
        if isinstance(value, _LazyTensor):
            result[str(key)] = value.materialize()
        elif isinstance(value, (int, float)):
            continue  # e.g. a version number
        else:
            raise PthError(f"entry {key!r} is a {type(value).__name__}, not a tensor")
    return result


def _load_zip(data: bytes) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        pickles = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise PthError("a zip-format .pth needs exactly one data.pkl")
        prefix = pickles[0][:-len("data.pkl")]

        def load_storage(key: str, storage: _Storage) -> np.ndarray:
            try:
                raw = z.read(f"{prefix}data/{key}")
            except KeyError as e:
                raise PthError(f"storage {key} is missing from the archive") from e
            if len(raw) != storage.numel * storage.dtype.itemsize:
                raise PthError(f"storage {key} holds {len(raw)} bytes, not the "
                               f"{storage.numel} elements of {storage.dtype.itemsize} bytes the "
                               "file declares; the file is corrupt")
            return np.frombuffer(raw, dtype=storage.dtype)

        unpickler = _RestrictedUnpickler(io.BytesIO(z.read(pickles[0])), {}, load_storage)
        return _materialize(unpickler.load())


def _load_legacy(data: bytes) -> dict[str, np.ndarray]:
    f = io.BytesIO(data)
    storages: dict[str, _Storage] = {}
    header = _RestrictedUnpickler(f, storages)
    if header.load() != LEGACY_MAGIC:
        raise PthError("not a PyTorch file (wrong magic number)")
    header.load()  # protocol version
    header.load()  # system info (byte order, type sizes)
    obj = _RestrictedUnpickler(f, storages).load()
    keys = _RestrictedUnpickler(f, storages).load()
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise PthError(f"storage {key} is listed but unused")
        (numel,) = struct.unpack("<q", f.read(8))
        if numel != storage.numel:
            raise PthError(f"storage {key} holds {numel} elements, not the {storage.numel} the "
                           "file declares; the file is corrupt")
        raw = f.read(numel * storage.dtype.itemsize)
        if len(raw) != numel * storage.dtype.itemsize:
            raise PthError("the file ends inside a tensor's data; it is truncated")
        storage.array = np.frombuffer(raw, dtype=storage.dtype)
    return _materialize(obj)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a ``.pth`` state dict (either format) as ``{name: numpy array}``.

    Raises:
      PthError: not a state dict, a corrupt or truncated file, or a pickle that names anything
        besides the tensor-rebuilding functions.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PthError(f"{path}: cannot be read ({e.strerror})") from e
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            return _load_zip(data)
        if data[:4] == b"PK\x03\x04":
            raise PthError("a zip-format .pth whose end is missing (a truncated download?); "
                           "download or copy it again")
        return _load_legacy(data)
    except PthError as e:
        raise PthError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, struct.error, zipfile.BadZipFile, ValueError,
            TypeError, IndexError, KeyError) as e:
        raise PthError(f"{path}: not a readable PyTorch state dict ({type(e).__name__}: {e})") \
            from None
