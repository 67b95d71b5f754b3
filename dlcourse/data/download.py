"""Optional real data sets (MNIST, Fashion-MNIST), fetched only when asked.

Nothing here touches the network unless a function is called with ``download=True``.
Files are cached under ``root`` (default: the ``DLCOURSE_CACHE`` environment variable,
else ``~/.cache/dlcourse``), and every file, new or cached, is checked against its
published SHA-256 digest before it is used.

Example:
    >>> images, labels = load_mnist("train", download=True)   # (60000, 1, 28, 28), (60000,)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write, sha256_file
from ..validation import check_bool, check_choice, check_sha256

OFFLINE_HINT = ("Offline, use the built-in data instead: dlcourse.data.make_shapes(n, size) "
                "(coloured shapes with labels and captions) or the scikit-learn digits "
                "(sklearn.datasets.load_digits).")

# Mirrors are tried in order. Digests: TensorFlow Datasets' url_checksums/mnist.txt and
# fashion_mnist.txt, the same values as the Fashion-MNIST README.
BASE_URLS = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/",),
    "fashion_mnist": ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
                      "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
}
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}


class DownloadError(ConnectionError):
    """A download failed: no network, server unreachable, or the URL is gone."""


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``root``, else ``$DLCOURSE_CACHE``, else ``~/.cache/dlcourse``."""
    if root is None:
        root = os.environ.get("DLCOURSE_CACHE") or Path.home() / ".cache" / "dlcourse"
    return Path(root).expanduser()


def fetch(url: str, sha256: str, dest: str | os.PathLike, *, timeout: float = 30) -> Path:
    """Download ``url`` to ``dest``, keeping it only if its SHA-256 digest is ``sha256``.

    The bytes go to a temporary file next to ``dest`` and are renamed into place
    (``dlcourse.files.atomic_write``) once the digest matches, so ``dest`` is either
    absent or complete and correct, even if the download is interrupted.

    Args:
        url: where to download from (``https://``, ``http://`` or ``file://``).
        sha256: the expected digest, 64 hex digits.
        dest: the file to create; its folder is made if needed.
        timeout: seconds to wait for the server before giving up.

    Returns:
        ``dest`` as a ``Path``.

    Raises:
        DownloadError: the download failed (offline, unreachable, not found).
        ValueError: the downloaded bytes do not have the expected digest.
    """
    sha256 = check_sha256("sha256", sha256)
    dest = Path(dest)

    def download(out) -> None:
        digest = hashlib.sha256()                                    # checked as the bytes arrive
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as err:              # refused, timeout, 404, ...
            raise DownloadError(
                f"could not download {url} ({err}). The machine may be offline or the "
                f"server unreachable. {OFFLINE_HINT}") from err
        if digest.hexdigest() != sha256:                             # raising here keeps nothing
            raise ValueError(
                f"{dest.name}: the file downloaded from {url} has the wrong SHA-256 digest "
                f"(expected {sha256}, got {digest.hexdigest()}); it was corrupted or has changed, "
                f"and was not kept.")

    return atomic_write(dest, download)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a gzip-compressed IDX file (the format of MNIST) into a numpy array.

    The header is two zero bytes, a type code (0x08 = uint8), the number of
    dimensions, then each dimension as a big-endian int32; the values follow.
    """
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in dtypes:
        raise ValueError(f"{Path(path).name}: not an IDX file (bad header {data[:4]!r})")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(dtypes[data[2]])
    offset = 4 + 4 * ndim
    count = int(np.prod(shape))
    if len(data) - offset != count * dtype.itemsize:
        raise ValueError(f"{Path(path).name}: header says shape {shape}, but the file holds "
                         f"{len(data) - offset} bytes of values")
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)


def _cached_file(kind: str, name: str, folder: Path, download: bool, split: str) -> Path:
    """Return a verified copy of one file of ``kind``, downloading it if allowed."""
    path, expected = folder / name, SHA256[kind][name]
    if path.exists():
        actual = sha256_file(path)
        if actual == expected:
            return path
        if not download:
            raise ValueError(
                f"{name}: the cached file {path} has the wrong SHA-256 digest (expected "
                f"{expected}, got {actual}). Delete it, or call load_mnist(split={split!r}, "
                f"kind={kind!r}, download=True) to download it again.")
    elif not download:
        raise FileNotFoundError(
            f"{kind} ({split}) is not in the cache: {path} is missing. To download it, call "
            f"load_mnist(split={split!r}, kind={kind!r}, download=True) (the cache folder is "
            f"set by root= or the DLCOURSE_CACHE environment variable). {OFFLINE_HINT}")
    error = None
    for base in BASE_URLS[kind]:                                     # try each mirror
        try:
            return fetch(base + name, expected, path)
        except DownloadError as err:
            error = err
    raise error


def load_mnist(split: str = "train", *, kind: str = "mnist", root=None,
               download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Load MNIST or Fashion-MNIST from the cache, downloading only if asked.

    Args:
        split: "train" (60,000 images) or "test" (10,000 images).
        kind: "mnist" (handwritten digits) or "fashion_mnist" (clothing).
        root: cache folder; default ``$DLCOURSE_CACHE``, else ``~/.cache/dlcourse``.
            Files live in ``root/kind/``.
        download: fetch missing files from the internet (with checksums).

    Returns:
        images: (N, 1, 28, 28) float32 in [-1, 1].
        labels: (N,) int64 in 0..9.

    Raises:
        FileNotFoundError: a file is not cached and ``download`` is False.
        DownloadError: ``download`` is True but the download failed.
        ValueError: a file has the wrong checksum or is not a valid IDX file.
    """
    check_choice("split", split, FILES)
    check_choice("kind", kind, BASE_URLS)
    check_bool("download", download)
    folder = cache_dir(root) / kind
    image_file, label_file = (_cached_file(kind, name, folder, download, split)
                              for name in FILES[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{kind} ({split}): expected images (N, H, W) and labels (N,), "
                         f"got {images.shape} and {labels.shape}")
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)    # (N, 1, 28, 28)
    return x / 127.5 - 1.0, torch.from_numpy(labels.astype(np.int64))
