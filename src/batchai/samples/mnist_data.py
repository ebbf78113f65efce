"""Prepare MNIST for the ConvNet_MNIST sample: IDX files in, CNTK text format files out.

    python -m batchai.samples.mnist_data --dest DIR [--source DIR_OR_URL] [--limit-train N] [--limit-test N]

``--source`` is a local directory holding the four ``*-ubyte.gz`` files (or their uncompressed forms) or an
http(s) base URL; without it the files are downloaded from the usual MNIST mirrors. The outputs are
``Train-28x28_cntk_text.txt`` and ``Test-28x28_cntk_text.txt``, one sample per line::

    |labels 0 0 0 1 0 0 0 0 0 0 |features 0 0 ... 255 ...

exactly as CNTK's own ``install_mnist.py`` wrote them. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import gzip
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
TRAIN_TEXT = "Train-28x28_cntk_text.txt"
TEST_TEXT = "Test-28x28_cntk_text.txt"
NUM_CLASSES = 10
DOWNLOAD_TIMEOUT = 60.0

_IDX_UBYTE = 0x08
_PIXELS = [str(value) for value in range(256)]
_LABELS = [" ".join("1" if column == row else "0" for column in range(NUM_CLASSES)) for row in range(NUM_CLASSES)]


class MnistDataError(Exception):
    """The MNIST files could not be found, downloaded or decoded."""


@dataclass(frozen=True)
class IdxArray:
    """An unsigned-byte IDX array: its dimensions and its row-major bytes."""

    shape: tuple[int, ...]
    data: bytes

    @property
    def count(self) -> int:
        return self.shape[0]

    @property
    def item_size(self) -> int:
        size = 1
        for dim in self.shape[1:]:
            size *= dim
        return size


def parse_idx(raw: bytes, name: str = "IDX data") -> IdxArray:
    """Decode an (optionally gzipped) IDX file holding unsigned bytes."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise MnistDataError(f"{name}: not a valid gzip file ({exc})") from exc
    if len(raw) < 4:
        raise MnistDataError(f"{name}: too short to be an IDX file")
    zero, dtype, ndim = struct.unpack_from(">HBB", raw)
    if zero != 0 or dtype != _IDX_UBYTE or ndim == 0:
        raise MnistDataError(f"{name}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise MnistDataError(f"{name}: truncated IDX header")
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    size = 1
    for dim in shape:
        size *= dim
    if len(raw) - header != size:
        raise MnistDataError(f"{name}: IDX shape {shape} needs {size} bytes, found {len(raw) - header}")
    return IdxArray(tuple(shape), raw[header:])


def cntk_text_lines(images: IdxArray, labels: IdxArray, limit: int | None = None) -> Iterator[str]:
    """The CNTK text format lines (with their newlines) for the first ``limit`` samples."""
    if len(labels.shape) != 1 or images.count != labels.count:
        raise MnistDataError(f"images {images.shape} and labels {labels.shape} do not match")
    count = images.count if limit is None else min(limit, images.count)
    size = images.item_size
    pixels, data, label_bytes = _PIXELS, images.data, labels.data
    for index in range(count):
        label = label_bytes[index]
        if label >= NUM_CLASSES:
            raise MnistDataError(f"sample {index}: label {label} is not a digit")
        row = data[index * size : (index + 1) * size]
        yield f"|labels {_LABELS[label]} |features {' '.join(map(pixels.__getitem__, row))}\n"


def write_atomically(path: Path, lines: Iterable[str]) -> None:
    """Write ``lines`` to a temporary file beside ``path``, then rename it into place."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as out:
            out.writelines(lines)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _read_local(directory: Path, name: str) -> bytes:
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate.read_bytes()
    raise MnistDataError(f"{directory / name} not found (nor its uncompressed form)")


def _download(base: str, name: str) -> bytes:
    url = base if base.endswith("/") else base + "/"
    request = urllib.request.Request(url + name, headers={"User-Agent": "batchai-samples/1.0"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response:
        data: bytes = response.read()
    return data


def load(source: str | None, names: Sequence[str]) -> dict[str, IdxArray]:
    """Decode ``names`` from a local directory, a base URL, or (``None``) the first mirror that serves them all."""
    if source is not None and not _is_url(source):
        directory = Path(source)
        if not directory.is_dir():
            raise MnistDataError(f"source directory {directory} does not exist")
        return {name: parse_idx(_read_local(directory, name), str(directory / name)) for name in names}
    bases = (source,) if source is not None else MIRRORS
    failures: list[str] = []
    for base in bases:
        try:
            return {name: parse_idx(_download(base, name), name) for name in names}
        except urllib.error.URLError as exc:  # HTTPError included
            failures.append(f"  {base}: {exc.reason}")
        except (OSError, MnistDataError) as exc:  # timeouts, resets, a mirror serving something else
            failures.append(f"  {base}: {exc}")
    raise MnistDataError(
        "could not download MNIST (offline?); tried:\n"
        + "\n".join(failures)
        + "\nDownload the four *-ubyte.gz files by other means and pass their directory as --source."
    )


def prepare(
    source: str | None, dest: Path, limit_train: int | None = None, limit_test: int | None = None
) -> list[Path]:
    """Write the CNTK text format training and test files into ``dest``; return their paths (train, test)."""
    for limit in (limit_train, limit_test):
        if limit is not None and limit < 1:
            raise MnistDataError(f"limits must be positive, not {limit}")
    arrays = load(source, (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for images, labels, limit, output in (
        (TRAIN_IMAGES, TRAIN_LABELS, limit_train, TRAIN_TEXT),
        (TEST_IMAGES, TEST_LABELS, limit_test, TEST_TEXT),
    ):
        path = dest / output
        write_atomically(path, cntk_text_lines(arrays[images], arrays[labels], limit))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m batchai.samples.mnist_data",
        description="Convert MNIST's IDX files to the CNTK text format read by the ConvNet_MNIST sample.",
    )
    parser.add_argument(
        "--source",
        help="directory holding the *-ubyte.gz files, or an http(s) base URL (default: download from "
        + ", ".join(MIRRORS)
        + ")",
    )
    parser.add_argument("--dest", required=True, type=Path, help="directory to write the two text files into")
    parser.add_argument("--limit-train", type=int, metavar="N", help="keep only the first N training samples")
    parser.add_argument("--limit-test", type=int, metavar="N", help="keep only the first N test samples")
    args = parser.parse_args(argv)
    try:
        paths = prepare(args.source, args.dest, args.limit_train, args.limit_test)
    except MnistDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
