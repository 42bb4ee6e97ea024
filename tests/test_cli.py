"""The command line contract: outputs, shapes, and one-line errors for bad input."""
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from snn2loihi.cli import main
from snn2loihi.ir import ConvLayer, DenseLayer, FlattenLayer, InputLayer, Network, NeuronSpec, PoolLayer
from snn2loihi.netx import write_network
from snn2loihi.sim.emulator import Emulator

SOFT = NeuronSpec("CUBA_SOFT", i_decay=4096, v_decay=0, vth_mant=64)


@pytest.fixture()
def net_file(tmp_path):
    """A conv/pool/flatten/dense soft-reset network with strong enough weights to spike."""
    rng = np.random.default_rng(0)
    layers = [InputLayer((1, 6, 6)),
              ConvLayer((1, 6, 6), rng.integers(-20, 60, (4, 1, 3, 3)) * 2, SOFT, padding=(1, 1)),
              PoolLayer((4, 6, 6), np.full((2, 2), 16), SOFT, stride=(2, 2)),
              FlattenLayer((4, 3, 3)),
              DenseLayer(rng.integers(-30, 60, (3, 36)) * 2, SOFT)]
    path = tmp_path / "net.net"
    write_network(Network(layers), path)
    return path


@pytest.fixture()
def x_file(tmp_path):
    x = (np.random.default_rng(1).random((3, 1, 6, 6, 8)) < 0.5).astype(np.uint8)
    path = tmp_path / "x.npy"
    np.save(path, x)
    return path, x


def _one_line_error(capsys, code, *fragments):
    out = capsys.readouterr()
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("snn2loihi: error: ")
    assert "Traceback" not in out.err
    for fragment in fragments:
        assert str(fragment) in lines[0]


def test_info_table_and_json(net_file, capsys):
    assert main(["info", str(net_file)]) == 0
    out = capsys.readouterr().out
    assert "CUBA_SOFT" in out and "pool" in out and "latency 3" in out
    assert main(["info", str(net_file), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["layers"]
    assert [r["type"].split()[0] for r in rows] == ["input", "conv", "pool", "flatten", "dense"]
    assert rows[1]["vThMant"] == 64 and rows[4]["weights"] == 108


@pytest.mark.parametrize("backend", ["emulator", "lava"])
def test_simulate_writes_last_layer_spikes(net_file, x_file, tmp_path, backend, capsys):
    """Y is (N, F_out, T + latency) and equals the emulator's output; --record-all adds an npz."""
    path, x = x_file
    out = tmp_path / f"y_{backend}.npy"
    assert main(["simulate", str(net_file), "--input", str(path), "--backend", backend, "--out", str(out),
                 "--record-all"]) == 0
    y = np.load(out)
    assert y.shape == (3, 3, 8 + 3) and y.dtype.kind == "i"
    from snn2loihi.netx import read_network
    from snn2loihi.data.encoding import pad_time

    reference = Emulator(read_network(net_file)).run(pad_time(x, 3), record_all=True)
    np.testing.assert_array_equal(y, reference.output)
    assert y.sum() > 0
    layers = np.load(out.with_suffix(".npz"))
    assert sorted(layers.files) == ["layer_1", "layer_2", "layer_4"]
    np.testing.assert_array_equal(layers["layer_1"], reference.spikes[1])


def test_simulate_no_pad_keeps_t(net_file, x_file, tmp_path):
    path, _ = x_file
    out = tmp_path / "y.npy"
    assert main(["simulate", str(net_file), "--input", str(path), "--out", str(out), "--no-pad"]) == 0
    assert np.load(out).shape == (3, 3, 8)


def test_energy_json_has_layers_and_sources(net_file, x_file, tmp_path, capsys):
    path, _ = x_file
    png = tmp_path / "e.png"
    assert main(["energy", str(net_file), "--input", str(path), "--json", "--plot", str(png)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [layer["name"] for layer in report["layers"]] == ["1:conv", "2:pool", "4:dense"]
    assert "Davies" in json.dumps(report["energy"]["constants"])
    assert png.stat().st_size > 1000
    assert main(["energy", str(net_file), "--input", str(path)]) == 0
    assert "Horowitz" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["info", "simulate", "energy"])
def test_missing_net_file(command, tmp_path, x_file, capsys):
    missing = tmp_path / "nope.net"
    extra = {"info": [], "simulate": ["--input", str(x_file[0]), "--out", str(tmp_path / "y.npy")],
             "energy": ["--input", str(x_file[0])]}[command]
    _one_line_error(capsys, main([command, str(missing), *extra]), missing, "no such file")


@pytest.mark.parametrize("command", ["info", "simulate", "energy"])
def test_not_hdf5(command, tmp_path, x_file, capsys):
    bad = tmp_path / "text.net"
    bad.write_text("this is not HDF5")
    extra = {"info": [], "simulate": ["--input", str(x_file[0]), "--out", str(tmp_path / "y.npy")],
             "energy": ["--input", str(x_file[0])]}[command]
    _one_line_error(capsys, main([command, str(bad), *extra]), bad, "not a readable HDF5 file")


@pytest.mark.parametrize("command", ["info", "simulate", "energy"])
def test_unknown_layer_type(command, tmp_path, x_file, capsys):
    bad = tmp_path / "odd.net"
    with h5py.File(bad, "w") as f:
        f.create_dataset("layer/0/type", (1,), "S10", [b"input"])
        f.create_dataset("layer/0/shape", data=[1, 6, 6])
        f.create_dataset("layer/1/type", (1,), "S10", [b"wormhole"])
    extra = {"info": [], "simulate": ["--input", str(x_file[0]), "--out", str(tmp_path / "y.npy")],
             "energy": ["--input", str(x_file[0])]}[command]
    _one_line_error(capsys, main([command, str(bad), *extra]), bad, "layer 1", "wormhole")


def test_ill_typed_dataset(tmp_path, capsys):
    bad = tmp_path / "typed.net"
    with h5py.File(bad, "w") as f:
        f.create_dataset("layer/0/type", (1,), "S10", [b"input"])
        f.create_dataset("layer/0/shape", data=[4])
        f.create_dataset("layer/1/type", (1,), "S10", [b"dense"])
        f.create_dataset("layer/1/weight", data=np.array([b"a", b"b"]))
    _one_line_error(capsys, main(["info", str(bad)]), bad, "weight", "numeric")


@pytest.mark.parametrize("backend", ["emulator", "lava"])
@pytest.mark.parametrize("case,fragment", [
    ("shape", "does not fit the network input"),
    ("nonbinary", "binary spikes"),
    ("fraction", "integers"),
    ("npz", "npz"),
    ("garbage", "not a readable .npy"),
    ("missing", "no such file"),
    ("object", "not a readable .npy"),
])
def test_simulate_bad_input_array(net_file, tmp_path, capsys, backend, case, fragment):
    path = tmp_path / f"{case}.npy"
    if case == "shape":
        np.save(path, np.zeros((2, 1, 5, 6, 8), np.uint8))
    elif case == "nonbinary":
        np.save(path, np.full((2, 1, 6, 6, 8), 3, np.int32))
    elif case == "fraction":
        np.save(path, np.full((2, 1, 6, 6, 8), 0.5))
    elif case == "npz":
        np.savez(path, a=np.zeros(3))
        path = tmp_path / "npz.npy.npz"
        path.rename(tmp_path / "z.npy")
        path = tmp_path / "z.npy"
    elif case == "garbage":
        path.write_bytes(b"\x00\x01garbage")
    elif case == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code = main(["simulate", str(net_file), "--input", str(path), "--backend", backend,
                 "--out", str(tmp_path / "y.npy")])
    _one_line_error(capsys, code, path, fragment)


def test_simulate_output_folder_missing(net_file, x_file, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "y.npy"
    _one_line_error(capsys, main(["simulate", str(net_file), "--input", str(x_file[0]), "--out", str(out)]),
                    out, "does not exist")


def test_demo_rejects_bad_arguments(capsys):
    _one_line_error(capsys, main(["demo", "--epochs", "0"]), "--epochs")


@pytest.mark.parametrize("command", ["demo", "info", "simulate", "energy"])
def test_help(command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0


def test_console_script_reports_one_line(tmp_path):
    """The installed entry point itself: exit status 2, one stderr line, no traceback."""
    missing = tmp_path / "missing.net"
    proc = subprocess.run([sys.executable, "-m", "snn2loihi.cli", "info", str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"snn2loihi: error: {missing}: no such file"
