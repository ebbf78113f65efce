"""The MNIST sample: IDX -> CNTK text conversion, the ConvNet_MNIST script's reader, network and a tiny run."""

from __future__ import annotations

import functools
import gzip
import http.server
import importlib.util
import re
import struct
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest

from batchai.samples import CONVNET_MNIST_SCRIPT
from batchai.samples import mnist_data as md

SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (SHARED_MNIST / md.TRAIN_IMAGES).is_file(), reason="no MNIST in ../shared")


def idx_bytes(shape: tuple[int, ...], data: bytes, compress: bool = True) -> bytes:
    raw = struct.pack(">HBB", 0, 0x08, len(shape)) + struct.pack(f">{len(shape)}I", *shape) + data
    return gzip.compress(raw) if compress else raw


def write_tiny_mnist(directory: Path) -> tuple[list[bytes], list[int]]:
    """Three 28x28 training images and two test images with known pixels; returns the training set."""
    directory.mkdir(parents=True, exist_ok=True)
    train = [bytes([0] * 783 + [255]), bytes(range(256)) * 3 + bytes(16), bytes([7, 10, 100] + [0] * 781)]
    train_labels = [5, 0, 9]
    (directory / md.TRAIN_IMAGES).write_bytes(idx_bytes((3, 28, 28), b"".join(train)))
    (directory / md.TRAIN_LABELS).write_bytes(idx_bytes((3,), bytes(train_labels)))
    test = [bytes([1] * 784), bytes([2] * 784)]
    (directory / md.TEST_IMAGES).write_bytes(idx_bytes((2, 28, 28), b"".join(test)))
    # an uncompressed file is accepted in place of the .gz one
    (directory / md.TEST_LABELS.removesuffix(".gz")).write_bytes(idx_bytes((2,), bytes([3, 1]), compress=False))
    return train, train_labels


def expected_line(pixels: bytes, label: int) -> str:
    one_hot = " ".join("1" if i == label else "0" for i in range(10))
    return f"|labels {one_hot} |features {' '.join(str(p) for p in pixels)}\n"


def test_idx_to_cntk_text_lines_are_exact(tmp_path: Path) -> None:
    train, labels = write_tiny_mnist(tmp_path / "idx")
    paths = md.prepare(str(tmp_path / "idx"), tmp_path / "out")
    assert paths == [tmp_path / "out" / md.TRAIN_TEXT, tmp_path / "out" / md.TEST_TEXT]
    text = paths[0].read_text()
    assert text == "".join(expected_line(p, label) for p, label in zip(train, labels, strict=True))
    assert text.splitlines()[0] == "|labels 0 0 0 0 0 1 0 0 0 0 |features " + "0 " * 783 + "255"
    assert paths[1].read_text().splitlines()[1] == "|labels 0 1 0 0 0 0 0 0 0 0 |features" + " 2" * 784
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [md.TEST_TEXT, md.TRAIN_TEXT]  # no temp files


def test_limits_and_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tiny_mnist(tmp_path / "idx")
    assert md.main(["--source", str(tmp_path / "idx"), "--dest", str(tmp_path / "out"), "--limit-train", "2"]) == 0
    assert capsys.readouterr().out.split() == [
        str(tmp_path / "out" / md.TRAIN_TEXT),
        str(tmp_path / "out" / md.TEST_TEXT),
    ]
    assert len((tmp_path / "out" / md.TRAIN_TEXT).read_text().splitlines()) == 2
    assert len((tmp_path / "out" / md.TEST_TEXT).read_text().splitlines()) == 2


def test_bad_inputs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert md.main(["--source", str(tmp_path / "missing"), "--dest", str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err
    write_tiny_mnist(tmp_path / "idx")
    (tmp_path / "idx" / md.TRAIN_LABELS).write_bytes(idx_bytes((2,), bytes([1, 2])))
    with pytest.raises(md.MnistDataError, match="do not match"):
        md.prepare(str(tmp_path / "idx"), tmp_path / "out")
    assert not (tmp_path / "out" / md.TRAIN_TEXT).exists()
    assert list((tmp_path / "out").iterdir()) == []  # the temporary file went away too
    with pytest.raises(md.MnistDataError, match="unsigned-byte IDX"):
        md.parse_idx(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(md.MnistDataError, match="needs 6 bytes"):
        md.parse_idx(idx_bytes((2, 3), b"\x00" * 5))


def test_unreachable_download_source_reports_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(md.MnistDataError, match=r"(?s)could not download MNIST.*http://127\.0\.0\.1:9/"):
        md.prepare("http://127.0.0.1:9/", tmp_path / "out")


def test_download_falls_back_to_the_next_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, _ = write_tiny_mnist(tmp_path / "idx")
    handler = functools.partial(QuietHandler, directory=str(tmp_path / "idx"))
    (tmp_path / "idx" / md.TEST_LABELS).write_bytes(idx_bytes((2,), bytes([3, 1])))  # the server has only .gz
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            mirror = f"http://127.0.0.1:{server.server_address[1]}/"
            monkeypatch.setattr(md, "MIRRORS", ("http://127.0.0.1:9/", mirror + "missing/", mirror))
            paths = md.prepare(None, tmp_path / "out", limit_train=1)
        finally:
            server.shutdown()
    assert paths[0].read_text() == expected_line(train[0], 5)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@needs_mnist
def test_real_mnist_with_limits(tmp_path: Path) -> None:
    train, test = md.prepare(str(SHARED_MNIST), tmp_path, limit_train=20, limit_test=5)
    lines = train.read_text().splitlines()
    assert len(lines) == 20 and len(test.read_text().splitlines()) == 5
    line = re.compile(r"\|labels (?:[01] ){10}\|features \d{1,3}(?: \d{1,3}){783}")
    assert all(line.fullmatch(text) for text in lines)
    assert lines[0].startswith("|labels 0 0 0 0 0 1 0 0 0 0 |features ")  # MNIST's first digit is a 5


# ---------------------------------------------------------------------------------------------------------------
# The training script (needs torch)
# ---------------------------------------------------------------------------------------------------------------


def load_script() -> ModuleType:
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("convnet_mnist_sample", CONVNET_MNIST_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_network_has_the_cntk_recipes_parameter_count() -> None:
    script = load_script()
    import torch

    model = script.build_model()
    assert script.count_parameters(model) == (98778, 10)
    assert [tuple(p.shape) for p in model.parameters()] == [
        (32, 1, 5, 5), (32,), (48, 32, 3, 3), (48,), (64, 48, 3, 3), (64,), (96, 576), (96,), (10, 96), (10,)
    ]  # fmt: skip
    model.eval()
    with torch.inference_mode():
        assert tuple(model(script.to_input(torch.zeros(2, 784, dtype=torch.uint8))).shape) == (2, 10)


def test_reader_fast_and_general_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_script()
    import torch

    train, labels = write_tiny_mnist(tmp_path / "idx")
    md.prepare(str(tmp_path / "idx"), tmp_path)
    path = tmp_path / md.TRAIN_TEXT
    expected = torch.tensor([list(p) for p in train], dtype=torch.uint8)
    monkeypatch.setattr(script, "_CHUNK_BYTES", 4096)  # several chunks, lines split across them
    fast = script._parse_fast(path)
    assert fast is not None
    assert torch.equal(fast[0], expected) and fast[1].tolist() == labels
    general = script._parse_general(path)
    assert torch.equal(general[0], expected.float()) and general[1].tolist() == labels
    # other layouts fall back to the general reader: features first, sparse labels, no final newline
    other = tmp_path / "other.txt"
    other.write_text(
        f"|features {' '.join(str(p) for p in train[1])} |labels 0 0 1 0 0 0 0 0 0 0\n"
        f"|labels 7:1 |features {' '.join(str(p) for p in train[2])}"
    )
    features, classes = script.read_cntk_text(other)
    assert torch.equal(features, expected[1:].float()) and classes.tolist() == [2, 7]
    with pytest.raises(script.DataFormatError, match="no samples"):
        (tmp_path / "empty.txt").write_text("\n")
        script.read_cntk_text(tmp_path / "empty.txt")


def test_learning_schedules_follow_cntk() -> None:
    script = load_script()
    lrs = [script.scheduled(script.LR_PER_SAMPLE, epoch) for epoch in range(40)]
    assert lrs[:10] == [0.001] * 10 and lrs[10:20] == [0.0005] * 10 and lrs[20:] == [0.0001] * 20
    momenta = [script.momentum_per_sample(script.scheduled(script.MOMENTUM_TIME_CONSTANT, e)) for e in range(8)]
    assert momenta[:5] == [0.0] * 5 and momenta[5:] == [pytest.approx(0.9990239141819757)] * 3


EPOCH_LINE = re.compile(
    r"Finished Epoch\[1 of 1\]: \[Training\] loss = \d+\.\d{6} \* 256, metric = \d+\.\d{2}% \* 256 "
    r"\d+\.\d{3}s \( *\d+\.\d samples/s\);"
)


@needs_mnist
def test_tiny_training_run(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    data, output = tmp_path / "data", tmp_path / "out" / "model"
    md.prepare(str(SHARED_MNIST), data, limit_train=256, limit_test=128)
    run = subprocess.run(
        [sys.executable, str(CONVNET_MNIST_SCRIPT), str(data), str(output), "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""  # all progress goes to stderr, as the original's did
    lines = run.stderr.splitlines()
    assert lines[:4] == [
        "Training 98778 parameters in 10 parameter tensors.",
        "",
        "Learning rate per 1 samples: 0.001",
        "Momentum per 1 samples: 0.0",
    ]
    assert EPOCH_LINE.fullmatch(lines[4]), lines[4]
    assert lines[5] == "" and re.fullmatch(r"Final Results: Minibatch\[1-2\]: errs = \d+\.\d{2}% \* 128", lines[6])
    assert sorted(p.name for p in output.iterdir()) == ["ConvNet_MNIST_0.dnn"]


def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    run = subprocess.run(
        [sys.executable, str(CONVNET_MNIST_SCRIPT), str(tmp_path), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "cannot read the data" in run.stderr and md.TRAIN_TEXT in run.stderr
