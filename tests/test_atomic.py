"""snn2loihi.atomic: a write that fails leaves the old file and no temporary file behind."""
import json
import os
import stat

import pytest

from snn2loihi.atomic import FILE_MODE, atomic_path, write_json


def test_write_json_replaces_the_file_readable_by_others(tmp_path):
    path = tmp_path / "sub" / "report.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert stat.S_IMODE(os.stat(path).st_mode) == FILE_MODE
    assert os.listdir(path.parent) == ["report.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    path = tmp_path / "model.net"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            with open(tmp, "w") as handle:
                handle.write("half of the new")
            raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.net"]


def test_write_json_refuses_data_json_cannot_hold_without_touching_the_file(tmp_path):
    path = tmp_path / "energy.json"
    write_json(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["energy.json"]
