"""netx reader and writer: round trips of the IR, and every malformed file the reader
must refuse with a one-line :class:`NetxFormatError` naming the file and the problem.

The bad files are made by writing a good network with ``write_network`` and then editing
one thing with h5py, so each case differs from a loadable file in exactly one respect.
"""
from __future__ import annotations

import dataclasses
import os
import re

import h5py
import numpy as np
import pytest

from conftest import random_network
from snn2loihi.errors import NetxFormatError
from snn2loihi.ir import (ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec,
                          PoolLayer)
from snn2loihi.netx.reader import read_network
from snn2loihi.netx.writer import write_network


# --------------------------------------------------------------------------- helpers

def assert_networks_equal(a: Network, b: Network) -> None:
    """Layer by layer, field by field equality of two IR networks (arrays by value)."""
    assert len(a.layers) == len(b.layers), f"{len(a.layers)} layers vs {len(b.layers)}"
    for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
        assert type(la) is type(lb), f"layer {i}: {type(la).__name__} vs {type(lb).__name__}"
        for f in dataclasses.fields(la):
            va, vb = getattr(la, f.name), getattr(lb, f.name)
            if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                assert va is not None and vb is not None, f"layer {i}.{f.name}: {va} vs {vb}"
                assert np.asarray(va).shape == np.asarray(vb).shape, f"layer {i}.{f.name} shape"
                assert np.array_equal(va, vb), f"layer {i}.{f.name} values differ"
            else:
                assert va == vb, f"layer {i}.{f.name}: {va!r} vs {vb!r}"


def all_types_network(soft: bool) -> Network:
    """Every layer type and option: input neuron, conv (stride/padding/dilation/groups,
    bias), pool, flatten, dense with bias, a readout dense without neuron."""
    kind = "CUBA_SOFT" if soft else "CUBA"
    rng = np.random.default_rng(5)
    conv = ConvLayer((4, 11, 9), rng.integers(-128, 127, size=(6, 2, 3, 2)) * 2,
                     NeuronSpec(kind, 1024, 128, 200), stride=(2, 1), padding=(1, 0),
                     dilation=(1, 2), groups=2, bias=rng.integers(-100, 100, size=6))
    pool = PoolLayer(conv.out_shape, np.array([[64, 63], [1, -2]]),
                     NeuronSpec("LOIHI", 4096, 0, 77), stride=(2, 2))
    flat = FlattenLayer(pool.out_shape)
    n = int(np.prod(pool.out_shape))
    dense = DenseLayer(rng.integers(-256, 255, size=(7, n)), NeuronSpec(kind, 0, 4096, 131071),
                       bias=rng.integers(-4096, 4096, size=7))
    readout = DenseLayer(rng.integers(-128, 127, size=(3, 7)) * 2, None)
    return Network([InputLayer((4, 11, 9), NeuronSpec(kind, 4096, 1024, 25)),
                    conv, pool, flat, dense, readout])


@pytest.fixture
def good_file(tmp_path):
    """A loadable file: input (2,8,8) → conv → pool → conv → flatten → dense → dense."""
    path = tmp_path / "good.net"
    write_network(random_network("conv", True, 3), path)
    read_network(path)  # sanity: the unedited file loads
    return str(path)


def edit(path: str, fn) -> str:
    """Apply ``fn(h5py.File)`` to the file in place and return its path."""
    with h5py.File(path, "r+") as handle:
        fn(handle)
    return path


def replace(group: h5py.Group, key: str, data, **kw) -> None:
    del group[key]
    group.create_dataset(key, data=data, **kw)


def set_type(group: h5py.Group, name: str) -> None:
    del group["type"]
    group.create_dataset("type", (1,), "S10", [name.encode("ascii")])


def assert_format_error(path, phrase: str) -> NetxFormatError:
    """read_network(path) raises NetxFormatError naming the path and ``phrase`` (regex)."""
    with pytest.raises(NetxFormatError) as info:
        read_network(path)
    message = str(info.value)
    assert str(path) in message, f"message does not name the file: {message}"
    assert re.search(phrase, message), f"message lacks {phrase!r}: {message}"
    assert "\n" not in message, f"message is not one line: {message!r}"
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, NetxFormatError), \
        "the h5py/ValueError traceback is chained into the user-facing error"
    return info.value


# Layer indices of the good file: 0 input, 1 conv, 2 pool, 3 conv, 4 flatten, 5 dense, 6 dense.

# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_round_trip_all_layer_types(tmp_path, soft):
    """write_network → read_network returns an IR equal to the original, field by field,
    for every layer type (input neuron, conv with all geometry options, pool, flatten,
    dense with bias, readout) and both reset types."""
    net = all_types_network(soft)
    write_network(net, tmp_path / "net.net")
    assert_networks_equal(net, read_network(tmp_path / "net.net"))


@pytest.mark.parametrize("kind,soft,input_neuron", [("dense", False, False), ("dense", True, True),
                                                     ("conv", True, False), ("conv_nopool", False, True)])
def test_round_trip_random_networks(tmp_path, kind, soft, input_neuron):
    """The random test networks (odd weights, LOIHI/CUBA spellings, biases) round-trip."""
    net = random_network(kind, soft, 9, input_neuron)
    write_network(net, tmp_path / "net.net")
    back = read_network(tmp_path / "net.net")
    assert_networks_equal(net, back)
    assert back.source == str(tmp_path / "net.net")


def test_round_trip_keeps_input_transform(tmp_path):
    """An input layer's stored transform (weight/bias scalars, read by the reader from the
    input group) survives a write → read round trip."""
    net = Network([InputLayer((5,), NeuronSpec("CUBA", 4096, 0, 10), transform_weight=32,
                              transform_bias=3),
                   DenseLayer(np.arange(10).reshape(2, 5) * 2, NeuronSpec("CUBA", 4096, 0, 10))])
    write_network(net, tmp_path / "net.net")
    back = read_network(tmp_path / "net.net")
    assert (back.input.transform_weight, back.input.transform_bias) == (32, 3)


def test_write_is_atomic_and_overwrites(tmp_path):
    """Writing over an existing file replaces it and leaves no temporary file behind."""
    path = tmp_path / "net.net"
    write_network(random_network("dense", False, 1), path)
    write_network(random_network("conv", False, 2), path)
    assert isinstance(read_network(path).layers[2], PoolLayer)
    assert os.listdir(tmp_path) == ["net.net"]


def test_stock_files_read(stock_netx_dir):
    """The stock lava-dl files we support read without error into the expected shapes."""
    tiny = read_network(os.path.join(stock_netx_dir, "tiny.net"))
    assert tiny.input.shape == (3, 16, 16) and tiny.output_shape == (36, 1, 1)
    mnist = read_network(os.path.join(stock_netx_dir, "mnist.net"))
    assert mnist.input.shape == (784,) and mnist.output_shape == (10,)
    assert mnist.layers[-1].neuron is None  # readout without neuron group


# --------------------------------------------------------------------------- bad files

def test_missing_file(tmp_path):
    """A path that does not exist."""
    assert_format_error(tmp_path / "nope.net", "no such file")


def test_directory(tmp_path):
    """A directory instead of a file."""
    assert_format_error(tmp_path, "is a directory")


def test_text_file(tmp_path):
    """A text file is not HDF5."""
    path = tmp_path / "text.net"
    path.write_text("layer 0: input\n" * 20)
    assert_format_error(path, "not a readable HDF5 file")


def test_empty_file(tmp_path):
    """A zero-byte file."""
    path = tmp_path / "empty.net"
    path.write_bytes(b"")
    assert_format_error(path, "not a readable HDF5 file")


def test_truncated_file(good_file):
    """A good file cut to half its bytes (an interrupted copy)."""
    data = open(good_file, "rb").read()
    with open(good_file, "wb") as handle:
        handle.write(data[: len(data) // 2])
    assert_format_error(good_file, r"not a readable HDF5 file \(.*truncated file")


def test_hdf5_without_layer_group(tmp_path):
    """An HDF5 file without the 'layer' group."""
    path = tmp_path / "nolayer.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("weights", data=np.zeros(3))
    assert_format_error(path, "no 'layer' group")


def test_layer_is_dataset(tmp_path):
    """'layer' exists but is a dataset, not a group."""
    path = tmp_path / "layerds.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("layer", data=np.zeros(3))
    assert_format_error(path, "no 'layer' group")


def test_empty_layer_group(tmp_path):
    """'layer' is an empty group."""
    path = tmp_path / "empty_layers.h5"
    with h5py.File(path, "w") as handle:
        handle.create_group("layer")
    assert_format_error(path, "'layer' group is empty")


def test_layer_names_not_consecutive(good_file):
    """Layer names must be 0..n-1: renaming layer 6 to 9 leaves a hole."""
    edit(good_file, lambda h: h.move("layer/6", "layer/9"))
    assert_format_error(good_file, r"layer names must be 0\.\.6")


def test_layer_names_not_numbers(good_file):
    """A layer named 'fc' instead of a number."""
    edit(good_file, lambda h: h.move("layer/6", "layer/fc"))
    assert_format_error(good_file, r"layer names must be 0\.\.6")


@pytest.mark.parametrize("name,phrase", [
    ("foo", "unknown layer type 'foo'"),
    ("dense_rec", "recurrent dense layers are not supported"),
    ("average", "'average' layers are not supported"),
    ("convT", "transposed convolution is not supported"),
])
def test_unknown_or_unsupported_layer_type(good_file, name, phrase):
    """Layer 5's type replaced by an unknown or unsupported one; the error names layer 5."""
    edit(good_file, lambda h: set_type(h["layer/5"], name))
    assert_format_error(good_file, "layer 5: " + phrase)


def test_first_layer_not_input(good_file):
    """Layer 0 declared as 'dense'."""
    edit(good_file, lambda h: set_type(h["layer/0"], "dense"))
    assert_format_error(good_file, "layer 0: the first layer must be 'input'")


def test_second_input_layer(good_file):
    """An 'input' layer in the middle of the network."""
    edit(good_file, lambda h: set_type(h["layer/4"], "input"))
    assert_format_error(good_file, "layer 4: the first layer must be 'input'")


def test_missing_type(good_file):
    """A layer group without a 'type' dataset."""
    edit(good_file, lambda h: h["layer/1"].__delitem__("type"))
    assert_format_error(good_file, "layer 1: missing dataset 'type'")


@pytest.mark.parametrize("name", ["SDNN", "FOO", "RF_PHASE"])
def test_unsupported_neuron_type(good_file, name):
    """A neuron type other than CUBA, LOIHI, CUBA_SOFT."""
    edit(good_file, lambda h: replace(h["layer/5/neuron"], "type", name))
    assert_format_error(good_file, f"layer 5: .*unsupported neuron type '{name}'")


@pytest.mark.parametrize("layer", [1, 5], ids=["conv", "dense"])
def test_missing_weight(good_file, layer):
    """A conv or dense layer without its 'weight' dataset."""
    edit(good_file, lambda h: h[f"layer/{layer}"].__delitem__("weight"))
    assert_format_error(good_file, f"layer {layer}: missing dataset 'weight'")


def test_string_weight(good_file):
    """A 'weight' dataset of strings."""
    edit(good_file, lambda h: replace(h["layer/5"], "weight", np.array([b"a", b"b"])))
    assert_format_error(good_file, "layer 5: dataset 'weight' must be numeric")


def test_nan_weight(good_file):
    """A NaN among the dense weights."""
    def fn(h):
        w = h["layer/5/weight"][()]
        w[0, 0] = np.nan
        replace(h["layer/5"], "weight", w)
    edit(good_file, fn)
    assert_format_error(good_file, "layer 5: dataset 'weight' must hold integer values")


def test_fractional_weight(good_file):
    """A fractional conv weight (a float export that was never quantized)."""
    def fn(h):
        w = h["layer/1/weight"][()]
        w.flat[3] = 12.5
        replace(h["layer/1"], "weight", w)
    edit(good_file, fn)
    assert_format_error(good_file, "layer 1: dataset 'weight' must hold integer values")


@pytest.mark.parametrize("value", [300, -300, 256])
def test_weight_out_of_range(good_file, value):
    """A dense weight outside the 8-bit mantissa range (256 with negative weights present
    is out of range too: mixed-sign weights span [-256, 254])."""
    def fn(h):
        w = h["layer/5/weight"][()]
        w[0, 0] = value
        w[0, 1] = -2
        replace(h["layer/5"], "weight", w)
    edit(good_file, fn)
    assert_format_error(good_file, "layer 5: weights span .* outside the chip's 8-bit mantissa range")


def test_bias_out_of_range(good_file):
    """A bias mantissa beyond 13 bits."""
    edit(good_file, lambda h: replace(h["layer/5"], "bias", np.full(10, 5000.0)))
    assert_format_error(good_file, "layer 5: .*bias mantissa must be within the 13-bit range")


def test_shape_mismatch_between_layers(good_file):
    """Layer 6's dense weight expects 11 inputs while layer 5 produces 10."""
    edit(good_file, lambda h: replace(h["layer/6"], "weight", np.zeros((5, 11), np.float32)))
    assert_format_error(good_file, r"layer 6 \(DenseLayer\) expects input \(11,\), but layer 5 produces \(10,\)")


def test_dense_rows_disagree_with_shape(good_file):
    """Dense 'shape' says 7 neurons but the weight has 10 rows."""
    edit(good_file, lambda h: replace(h["layer/5"], "shape", np.array([7])))
    assert_format_error(good_file, "layer 5: weight has 10 rows but shape says 7 neurons")


def test_conv_declared_shape_wrong(good_file):
    """Conv 'shape' declares (4, 7, 7) where the geometry gives (4, 8, 8)."""
    edit(good_file, lambda h: replace(h["layer/1"], "shape", np.array([4, 7, 7])))
    assert_format_error(good_file, r"layer 1: declared shape \(4, 7, 7\) differs from the computed output \(4, 8, 8\)")


def test_conv_weight_channels_wrong(good_file):
    """Conv weight with 3 input channels for a 2-channel input."""
    edit(good_file, lambda h: replace(h["layer/1"], "weight", np.zeros((4, 3, 3, 3, 1), np.float32)))
    assert_format_error(good_file, "layer 1: conv weight .* does not fit 2 input channels")


def test_conv_weight_5d_not_singleton(good_file):
    """A 5-D conv weight whose last axis is not 1 (a 3-D conv)."""
    edit(good_file, lambda h: replace(h["layer/1"], "weight", np.zeros((4, 2, 3, 3, 2), np.float32)))
    assert_format_error(good_file, "layer 1: 5-D conv weight .* must have a last axis of 1")


@pytest.mark.parametrize("shape,phrase", [
    ([2, -8, 8], "must be positive"),
    ([2, 0, 8], "must be positive"),
    ([100000, 100000, 100], r"at most 2\^26 neurons"),
    ([2.5, 8, 8], "must hold integer values"),
])
def test_bad_input_shape(good_file, shape, phrase):
    """Negative, zero, huge or fractional input shapes."""
    edit(good_file, lambda h: replace(h["layer/0"], "shape", np.array(shape)))
    assert_format_error(good_file, "layer 0: .*" + phrase)


@pytest.mark.parametrize("key,value,phrase", [
    ("iDecay", 5000, "outside the 12-bit range"),
    ("vDecay", 5000, "outside the 12-bit range"),
    ("vDecay", -1, "outside the 12-bit range"),
    ("vThMant", 200000, r"vThMant = 200000 is outside"),
    ("refDelay", 2, "refDelay = 2 is not supported"),
    ("gradedSpike", True, "graded spikes"),
])
def test_bad_neuron_parameter(good_file, key, value, phrase):
    """Neuron parameters outside Loihi's registers or unsupported by Lava's LIF."""
    edit(good_file, lambda h: replace(h["layer/3/neuron"], key, value))
    assert_format_error(good_file, "layer 3: .*" + phrase)


def test_missing_neuron_parameter(good_file):
    """A neuron group without vThMant."""
    edit(good_file, lambda h: h["layer/3/neuron"].__delitem__("vThMant"))
    assert_format_error(good_file, "layer 3: .*'vThMant'")


def test_message_bits(good_file):
    """Graded spikes declared through neuron/messageBits."""
    edit(good_file, lambda h: h["layer/5/neuron"].create_dataset("messageBits", data=3))
    assert_format_error(good_file, r"layer 5: graded spikes \(neuron/messageBits > 0\)")


def test_delay_dataset(good_file):
    """Synaptic delays (slayer's 'delay' dataset) are refused, not ignored."""
    edit(good_file, lambda h: h["layer/5"].create_dataset("delay", data=np.zeros(10)))
    assert_format_error(good_file, r"layer 5: synaptic delays \('delay'\) are not supported")


def test_layer_not_a_group(good_file):
    """A layer entry that is a dataset."""
    def fn(h):
        del h["layer/6"]
        h.create_dataset("layer/6", data=np.zeros(3))
    edit(good_file, fn)
    assert_format_error(good_file, "layer 6 is not a group")


def test_network_ends_with_flatten(good_file):
    """Dropping the dense layers leaves a network that ends with flatten."""
    def fn(h):
        del h["layer/5"]
        del h["layer/6"]
    edit(good_file, fn)
    assert_format_error(good_file, "cannot end with a flatten layer")


def test_corrupted_bytes_never_escape(good_file):
    """Random byte corruption (bit rot, a bad copy) anywhere in a good file: every read
    either succeeds or raises NetxFormatError — no h5py exception (OSError, KeyError,
    RuntimeError, ...) escapes to the user. 300 deterministic corruptions of 1-63 bytes."""
    good = open(good_file, "rb").read()
    rng = np.random.default_rng(0)
    escaped = {}
    for _ in range(300):
        data = bytearray(good)
        start, length = int(rng.integers(0, len(data) - 64)), int(rng.integers(1, 64))
        data[start:start + length] = rng.integers(0, 256, size=length, dtype=np.uint8).tobytes()
        with open(good_file, "wb") as handle:
            handle.write(bytes(data))
        try:
            read_network(good_file)
        except NetxFormatError as err:
            assert good_file in str(err)
        except Exception as err:  # noqa: BLE001 - this is what the test looks for
            escaped.setdefault(type(err).__name__, (start, length, str(err)[:120]))
    assert not escaped, f"exceptions escaped read_network: {escaped}"


def test_corrupted_symbol_table(good_file):
    """The symbol-table nodes of the file (signature 'SNOD', where HDF5 lists a group's
    members) overwritten: h5py raises RuntimeError while looking up layers; the reader
    must report that as a NetxFormatError."""
    data = open(good_file, "rb").read()
    assert b"SNOD" in data
    with open(good_file, "wb") as handle:
        handle.write(data.replace(b"SNOD", b"XXXX"))
    assert_format_error(good_file, "symbol table|not a readable|layer")


def test_shape_product_overflow(tmp_path):
    """An input shape whose neuron count overflows int64 (2^30 · 2^30 · 2^30 = 2^90 wraps to
    0) is refused by the 2^26-neuron limit rather than accepted as a 0-neuron layer."""
    path = tmp_path / "huge.net"
    with h5py.File(path, "w") as handle:
        g = handle.create_group("layer/0")
        g.create_dataset("type", (1,), "S10", [b"input"])
        g.create_dataset("shape", data=np.array([1 << 30, 1 << 30, 1 << 30]))
        g = handle.create_group("layer/1")
        g.create_dataset("type", (1,), "S10", [b"flatten"])
        g = handle.create_group("layer/2")
        g.create_dataset("type", (1,), "S10", [b"dense"])
        g.create_dataset("shape", data=np.array([5]))
        g.create_dataset("weight", data=np.zeros((5, 0), np.float32))
    assert_format_error(path, r"layer 0: .*at most 2\^26 neurons")


def test_scalar_weight(good_file):
    """A dense 'weight' stored as a single number: the message talks about the weight
    (not an internal 'tuple index out of range')."""
    edit(good_file, lambda h: replace(h["layer/5"], "weight", 2.0))
    error = assert_format_error(good_file, "layer 5: .*weight")
    assert "index out of range" not in str(error)


def test_dangling_link_names_layer(good_file):
    """A layer entry that is a soft link to nothing: the error names the layer."""
    def fn(h):
        del h["layer/6"]
        h["layer/6"] = h5py.SoftLink("/nowhere")
    edit(good_file, fn)
    assert_format_error(good_file, "layer 6")
