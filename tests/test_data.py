"""Data readers on files written here byte for byte in the real formats, and the converters.

IDX (Fashion-MNIST), N-MNIST ``.bin`` (5-byte ATIS records), DVS-CIFAR10 ``.aedat``
(AEDAT 2.0, DVS128 addresses), CIFAR python batches, image folders; truncated or malformed
files must raise DataError naming the file and the byte offset.
"""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from snn2loihi.data.cifar import load_cifar, read_batch
from snn2loihi.data.event_files import read_dvs_cifar10, read_nmnist, write_nmnist
from snn2loihi.data.events import events_to_frames, make_events, saccade_counts, saccade_events, saccade_frames
from snn2loihi.data.fashion_mnist import load_fashion_mnist, read_idx
from snn2loihi.data.image_folder import load_image_folder
from snn2loihi.errors import DataError
from snn2loihi.training.inputs import InputEncoding


# --------------------------------------------------------------------------- IDX

def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fmnist_dir(folder, n_train=6, n_test=4, compress=True):
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
             "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
             "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test)}
    for name, array in files.items():
        data = _idx(array)
        if compress:
            (folder / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return files


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_idx_files(tmp_path, compress):
    files = _fmnist_dir(tmp_path, compress=compress)
    split = load_fashion_mnist(str(tmp_path))
    assert split.x_train.shape == (6, 1, 28, 28) and split.x_test.shape == (4, 1, 28, 28)
    np.testing.assert_allclose(split.x_train[:, 0] * 255, files["train-images-idx3-ubyte"], atol=1e-4)
    np.testing.assert_array_equal(split.y_test, files["t10k-labels-idx1-ubyte"])


def test_idx_truncated_and_bad_magic(tmp_path):
    data = _idx(np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256)
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(data[:-10])
    with pytest.raises(DataError, match=rf"x-idx3-ubyte: truncated IDX data: .*{16 + 2 * 784} bytes.*byte {len(data) - 10}"):
        read_idx(str(path))
    path.write_bytes(data[:10])
    with pytest.raises(DataError, match="truncated IDX header: it needs 16 bytes, the data end at byte 10"):
        read_idx(str(path))
    path.write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(DataError, match="not an IDX file: magic 0102"):
        read_idx(str(path))
    gz = tmp_path / "y.gz"
    gz.write_bytes(gzip.compress(data)[:-20])
    with pytest.raises(DataError, match="y.gz: truncated or corrupt gzip"):
        read_idx(str(gz))


def test_missing_fashion_mnist_says_what_to_install(tmp_path):
    with pytest.raises(DataError, match="apt-get install -y dataset-fashion-mnist.*make bench-data.*--data-dir"):
        load_fashion_mnist(str(tmp_path))


# --------------------------------------------------------------------------- N-MNIST

def _nmnist_record(x, y, p, t):
    return bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])


def test_nmnist_bin_records_by_hand(tmp_path):
    path = tmp_path / "00002.bin"
    path.write_bytes(_nmnist_record(3, 33, 1, 0x7FFFFF) + _nmnist_record(0, 5, 0, 1000) + _nmnist_record(10, 2, 1, 65537))
    ev = read_nmnist(str(path))
    assert ev["t"].tolist() == [1000, 65537, 0x7FFFFF]           # sorted by time
    assert ev["x"].tolist() == [0, 10, 3] and ev["y"].tolist() == [5, 2, 33] and ev["p"].tolist() == [0, 1, 1]
    path.write_bytes(_nmnist_record(3, 4, 1, 5) * 3 + b"\x01\x02")
    with pytest.raises(DataError, match=r"00002.bin: truncated record at byte 15: 2 of 5 bytes"):
        read_nmnist(str(path))
    path.write_bytes(_nmnist_record(3, 4, 1, 5) + _nmnist_record(40, 4, 1, 5))
    with pytest.raises(DataError, match="event at byte 5 has x=40"):
        read_nmnist(str(path))


def test_nmnist_write_read_round_trip(tmp_path):
    ev = make_events([5, 0, 300000], [1, 33, 7], [0, 2, 30], [1, 0, 1])
    write_nmnist(str(tmp_path / "a.bin"), ev)
    assert (tmp_path / "a.bin").stat().st_size == 15
    np.testing.assert_array_equal(read_nmnist(str(tmp_path / "a.bin")), ev)


# --------------------------------------------------------------------------- DVS-CIFAR10

def _aedat(records, header=b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n# created 2017\r\n"):
    return header + b"".join(struct.pack(">II", a, t) for a, t in records)


def test_dvs_cifar10_aedat_by_hand(tmp_path):
    # DVS128 address: y << 8 | x_raw << 1 | polarity bit (1 = OFF); jAER mirrors x.
    records = [((17 << 8) | (5 << 1) | 1, 10), ((0 << 8) | (127 << 1) | 0, 25)]
    path = tmp_path / "cifar10_cat_0.aedat"
    path.write_bytes(_aedat(records))
    ev = read_dvs_cifar10(str(path))
    assert ev["t"].tolist() == [10, 25]
    assert ev["x"].tolist() == [127 - 5, 0] and ev["y"].tolist() == [17, 0] and ev["p"].tolist() == [0, 1]
    raw = _aedat(records)
    path.write_bytes(raw[:-3])
    with pytest.raises(DataError, match=rf"truncated event record at byte {len(raw) - 8}: 5 of 8 bytes"):
        read_dvs_cifar10(str(path))
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(DataError, match="not an AEDAT file: byte 0"):
        read_dvs_cifar10(str(path))


# --------------------------------------------------------------------------- CIFAR

def _cifar_batch(path, n, label_key=b"labels", seed=0):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    with open(path, "wb") as handle:
        pickle.dump({b"batch_label": b"training batch", label_key: labels, b"data": data,
                     b"filenames": [b"x.png"] * n}, handle, protocol=2)
    return data, labels


def test_cifar10_python_batches(tmp_path):
    parts = [_cifar_batch(tmp_path / f"data_batch_{i}", 3, seed=i) for i in range(1, 6)]
    test_data, test_labels = _cifar_batch(tmp_path / "test_batch", 2, seed=9)
    split = load_cifar(str(tmp_path), 10)
    assert split.x_train.shape == (15, 3, 32, 32)
    np.testing.assert_array_equal(split.y_test, test_labels)
    # row 0, channel 1 (green), pixel (0, 1) is byte 1024 + 1 of the 3072-byte record
    assert split.x_test[0, 1, 0, 1] * 255 == pytest.approx(test_data[0, 1025], abs=1e-3)
    assert split.x_train[3, 2, 31, 31] * 255 == pytest.approx(parts[1][0][0, 3071], abs=1e-3)


def test_cifar100_and_bad_batches(tmp_path):
    _cifar_batch(tmp_path / "train", 4, b"fine_labels")
    _cifar_batch(tmp_path / "test", 2, b"fine_labels")
    assert load_cifar(str(tmp_path), 100).x_train.shape == (4, 3, 32, 32)
    raw = (tmp_path / "train").read_bytes()
    (tmp_path / "train").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(DataError, match=r"train: truncated or corrupt pickle: .*reading stopped at byte \d+ of"):
        read_batch(str(tmp_path / "train"), "fine_labels")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match="refusing to load"):
        read_batch(str(tmp_path / "evil"))


# --------------------------------------------------------------------------- image folders

def test_image_folder(tmp_path):
    from PIL import Image

    for label, name in enumerate(("n01440764", "n01443537")):
        folder = tmp_path / name
        folder.mkdir()
        for k in range(2):
            Image.new("RGB", (40, 20), (label * 200, 10 * k, 255)).save(folder / f"img{k}.png")
    (tmp_path / "n01443537" / "notes.txt").write_text("not an image")
    x, y, classes = load_image_folder(str(tmp_path), size=8)
    assert x.shape == (4, 3, 8, 8) and y.tolist() == [0, 0, 1, 1] and classes == ["n01440764", "n01443537"]
    assert x[2, 0, 0, 0] == pytest.approx(200 / 255) and x[1, 1, 3, 3] == pytest.approx(10 / 255)
    good = (tmp_path / "n01440764" / "img0.png").read_bytes()
    (tmp_path / "n01440764" / "img0.png").write_bytes(good[:30])
    with pytest.raises(DataError, match=r"img0.png: not a readable image .*file ends at byte 30"):
        load_image_folder(str(tmp_path), size=8)


# --------------------------------------------------------------------------- events

def test_events_to_frames_by_hand():
    ev = make_events([0, 10, 50, 99, 99], [1, 1, 2, 0, 0], [0, 0, 1, 1, 1], [1, 1, 0, 1, 0])
    frames = events_to_frames(ev, (2, 3), timesteps=4, duration=100)   # bins of 25 µs
    assert frames.shape == (2, 2, 3, 4) and frames.sum() == 4          # two events share (p, y, x, bin)
    assert frames[1, 0, 1, 0] == 1 and frames[0, 1, 2, 2] == 1 and frames[1, 1, 0, 3] == 1 and frames[0, 1, 0, 3] == 1


def test_saccade_conversion_is_consistent_and_deterministic():
    images = np.zeros((2, 1, 6, 6), np.float32)
    images[0, 0, 2:4, 2:4] = 1.0
    counts = saccade_counts(images, steps_per_saccade=4, margin=3)
    assert counts.shape == (2, 12, 2, 12, 12)
    assert counts[1].sum() == 0 and counts[0, :, 1].sum() > 0 and counts[0, :, 0].sum() > 0   # ON and OFF
    frames = saccade_frames(images, 4, steps_per_saccade=4)
    events = saccade_events(images[0, 0], steps_per_saccade=4)
    assert len(events) == counts[0].sum()
    np.testing.assert_array_equal(events_to_frames(events, (12, 12), 4, duration=300_000), frames[0])
    np.testing.assert_array_equal(saccade_frames(images, 4, steps_per_saccade=4), frames)


def test_input_encodings_are_per_sample_and_deterministic():
    images = np.random.default_rng(0).random((6, 1, 4, 4)).astype(np.float32)
    poisson = InputEncoding("poisson", seed=3)
    whole = poisson(images, np.arange(6), 8, epoch=1)
    part = poisson(images[[4, 1]], np.array([4, 1]), 8, epoch=1)          # another batch composition
    torch.testing.assert_close(part, whole[[4, 1]])
    assert not torch.equal(poisson(images, np.arange(6), 8, epoch=2), whole)
    rate = InputEncoding("rate")(images, np.arange(6), 8, epoch=0)
    np.testing.assert_array_equal(rate.sum(-1).numpy(), np.floor(images * 8 + 0.5))   # rounded rate code
    assert InputEncoding("saccade").shape((1, 4, 4)) == (2, 10, 10)
