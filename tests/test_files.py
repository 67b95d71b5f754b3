"""dlcourse.files: digests against published test vectors, writes that are all or nothing."""

import hashlib
import os

import pytest

from dlcourse import files
from dlcourse.files import ASSET_DIR, atomic_create, atomic_write, atomic_write_bytes, sha256_bytes, sha256_file

# FIPS 180-2, appendix B: SHA-256 of "abc" and of the 448-bit message; and of nothing.
VECTORS = {
    b"": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    b"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq":
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
}


@pytest.mark.parametrize("data", list(VECTORS), ids=["empty", "abc", "448 bits"])
def test_sha256_matches_the_published_vectors(tmp_path, data):
    path = tmp_path / "x.bin"
    path.write_bytes(data)
    assert sha256_file(path) == VECTORS[data]
    assert sha256_bytes(data) == VECTORS[data]


def test_sha256_file_reads_every_chunk(tmp_path):
    # 2.5 chunks: a digest of the first or the last chunk only would differ
    data = bytes(range(256)) * (files.CHUNK * 5 // 512) + b"tail"
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert len(data) > 2 * files.CHUNK
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path) != sha256_bytes(data[:files.CHUNK])


def test_atomic_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "sub" / "out.bin"                       # the folder is made
    assert atomic_write_bytes(path, b"first") == path
    atomic_write(path, lambda f: f.write(b"second"))
    assert path.read_bytes() == b"second"
    assert os.listdir(path.parent) == ["out.bin"]
    assert (path.stat().st_mode & 0o777) == 0o644             # readable by others, like any saved file


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"old")

    def half_then_fail(f):
        f.write(b"half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_create_never_replaces_a_file(tmp_path):
    path = tmp_path / "work" / "nb.ipynb"
    assert atomic_create(path, lambda f: f.write(b"release")) is True
    assert path.read_bytes() == b"release"
    assert atomic_create(path, lambda f: f.write(b"release v2")) is False
    assert path.read_bytes() == b"release"

    other = tmp_path / "work" / "other.ipynb"

    def learner_saves_meanwhile(f):                           # the file appears while we copy
        other.write_bytes(b"my answers")
        f.write(b"release")

    assert atomic_create(other, learner_saves_meanwhile) is False
    assert other.read_bytes() == b"my answers"
    assert sorted(os.listdir(path.parent)) == ["nb.ipynb", "other.ipynb"]


def test_the_asset_folder_holds_the_shipped_files():
    assert ASSET_DIR.is_dir()
    for name in ("judge_shapes16.pt", "shapes16_unet.pt", "toy2d_mlp.pt"):
        sidecar = (ASSET_DIR / f"{name}.sha256").read_text().split()
        assert sidecar[0] == sha256_file(ASSET_DIR / name) and sidecar[1] == name
