"""Tests for dlcourse.data.download, all offline: file:// URLs and a refused port."""

import gzip
import hashlib
import re
import struct

import numpy as np
import pytest
import torch

from dlcourse.data import DownloadError, fetch, load_mnist, read_idx
from dlcourse.data import download

UNREACHABLE = "http://127.0.0.1:9/"          # the discard port: connection refused


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _idx_gz(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the gzip IDX format, written out by hand."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- fetch


def test_fetch_with_the_right_digest_keeps_the_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"denoise to generate" * 100)
    dest = tmp_path / "cache" / "sub" / "copy.bin"
    assert fetch(src.as_uri(), _sha(src.read_bytes()), dest) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert _leftovers(dest.parent) == ["copy.bin"]               # no temporary file left


def test_fetch_rejects_a_wrong_digest_and_leaves_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"some bytes")
    wrong = _sha(b"other bytes")
    dest = tmp_path / "cache" / "copy.bin"
    with pytest.raises(ValueError) as info:
        fetch(src.as_uri(), wrong, dest)
    message = str(info.value)
    assert "copy.bin" in message and wrong in message and _sha(b"some bytes") in message
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_fetch_offline_raises_download_error_naming_the_alternative(tmp_path):
    dest = tmp_path / "x.bin"
    with pytest.raises(DownloadError) as info:
        fetch(UNREACHABLE + "x", "0" * 64, dest, timeout=5)
    assert isinstance(info.value, OSError)
    message = str(info.value)
    assert UNREACHABLE in message and "offline" in message and "make_shapes" in message
    assert _leftovers(tmp_path) == []


def test_fetch_checks_its_digest_argument(tmp_path):
    with pytest.raises(ValueError, match=r"^sha256: "):
        fetch("file:///nowhere", "abc", tmp_path / "x")


# ---------------------------------------------------------------- IDX


def test_read_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "images.gz"
    path.write_bytes(_idx_gz(images))
    out = read_idx(path)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8 and np.array_equal(out, images)


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"\x01\x02\x08\x01" + b"\x00" * 8))
    with pytest.raises(ValueError, match="bad.gz"):
        read_idx(bad)
    short = tmp_path / "short.gz"
    short.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3))
    with pytest.raises(ValueError, match="short.gz"):
        read_idx(short)


# ---------------------------------------------------------------- load_mnist


def test_load_mnist_not_cached_explains_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist("train", root=tmp_path)
    message = str(info.value)
    assert "download=True" in message and "make_shapes" in message and "load_digits" in message
    assert str(tmp_path) in message


def test_load_mnist_default_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCOURSE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="cache"):
        load_mnist("test", kind="fashion_mnist")
    assert download.cache_dir() == tmp_path / "cache"


def test_load_mnist_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"^split: "):
        load_mnist("valid", root=tmp_path)
    with pytest.raises(ValueError, match=r"^kind: "):
        load_mnist(kind="cifar10", root=tmp_path)


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    """Serve a tiny MNIST (5 train, 3 test images) from file:// URLs."""
    server = tmp_path / "server"
    server.mkdir()
    rng = np.random.default_rng(0)
    sets = {"train": 5, "test": 3}
    arrays, digests = {}, {}
    for split, n in sets.items():
        image_name, label_name = download.FILES[split]
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        images[0, 0, :2] = (0, 255)                              # the two extremes
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        for name, array in ((image_name, images), (label_name, labels)):
            data = _idx_gz(array)
            (server / name).write_bytes(data)
            digests[name] = _sha(data)
        arrays[split] = (images, labels)
    monkeypatch.setitem(download.BASE_URLS, "mnist", (UNREACHABLE, server.as_uri() + "/"))
    monkeypatch.setitem(download.SHA256, "mnist", digests)
    return server, arrays


def test_load_mnist_whole_path_offline(tmp_path, fake_server):
    server, arrays = fake_server
    root = tmp_path / "cache"
    images, labels = load_mnist("train", root=root, download=True)   # first mirror refused
    want_images, want_labels = arrays["train"]
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (5,) and labels.dtype == torch.int64
    assert torch.equal(labels, torch.from_numpy(want_labels.astype(np.int64)))
    assert images[0, 0, 0, 0] == -1 and images[0, 0, 0, 1] == 1
    expected = torch.from_numpy(want_images / 127.5 - 1).float()
    assert torch.allclose(images[:, 0], expected, atol=1e-6)
    assert _leftovers(root / "mnist") == sorted(download.FILES["train"])

    # Cached now: no download needed, even with the server gone.
    for f in server.iterdir():
        f.unlink()
    again, _ = load_mnist("train", root=root)
    assert torch.equal(again, images)
    still, _ = load_mnist("train", root=root, download=True)        # verified, not refetched
    assert torch.equal(still, images)


def test_load_mnist_reverifies_the_cache(tmp_path, fake_server):
    root = tmp_path / "cache"
    load_mnist("test", root=root, download=True)
    cached = root / "mnist" / download.FILES["test"][0]
    cached.write_bytes(cached.read_bytes()[:-5])                     # a damaged cached file
    with pytest.raises(ValueError, match="SHA-256") as info:
        load_mnist("test", root=root)
    assert "download=True" in str(info.value)
    images, _ = load_mnist("test", root=root, download=True)        # fetched again
    assert images.shape == (3, 1, 28, 28)


def test_load_mnist_all_mirrors_down(tmp_path, monkeypatch, fake_server):
    monkeypatch.setitem(download.BASE_URLS, "mnist", (UNREACHABLE,))
    with pytest.raises(DownloadError, match="make_shapes"):
        load_mnist("test", root=tmp_path / "cache", download=True)


def test_checksum_table_is_complete():
    digests = []
    for kind in download.BASE_URLS:
        assert set(download.SHA256[kind]) == {name for names in download.FILES.values() for name in names}
        for names in download.FILES.values():
            for name in names:
                digest = download.SHA256[kind][name]
                assert re.fullmatch(r"[0-9a-f]{64}", digest), f"{kind}/{name}: {digest!r} is not a SHA-256 digest"
                digests.append(digest)
    assert len(set(digests)) == len(digests), "two files with one digest: a digest was pasted twice"


def test_fetch_checks_the_bytes_against_a_published_digest(tmp_path):
    # FIPS 180-2, appendix B.1: SHA-256("abc"); computed here by nobody, so a digest of the
    # wrong bytes (a header, a partial chunk, an empty file) cannot agree with it
    src = tmp_path / "abc.bin"
    src.write_bytes(b"abc")
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert fetch(src.as_uri(), abc.upper(), tmp_path / "copy.bin").read_bytes() == b"abc"
    src.write_bytes(b"abd")
    with pytest.raises(ValueError, match="wrong SHA-256"):
        fetch(src.as_uri(), abc, tmp_path / "other.bin")
    assert not (tmp_path / "other.bin").exists()
