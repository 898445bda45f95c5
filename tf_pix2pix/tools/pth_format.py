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


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), stride

    def materialize(self) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise PthError("a tensor refers to storage data missing from the file")
        needed = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride)) + 1
        if self.size and min(self.size) == 0:
            return np.zeros(self.size, data.dtype)
        if needed > data.size:
            raise PthError("a tensor reaches past the end of its storage; the file is corrupt")
        if not self.size:  # a scalar (as_strided would read shape () as "unchanged")
            return np.array(data[self.offset])
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size,
            strides=[s * data.itemsize for s in self.stride])
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
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
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
        return _load_legacy(data)
    except PthError as e:
        raise PthError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, struct.error, zipfile.BadZipFile, ValueError,
            TypeError, IndexError, KeyError) as e:
        raise PthError(f"{path}: not a readable PyTorch state dict ({type(e).__name__}: {e})") \
            from None
