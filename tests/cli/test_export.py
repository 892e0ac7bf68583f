"""``gatedrnn export``: a missing exporter dependency is named, with the command that installs it."""
import importlib.util

import pytest

from gatedrnn.cli import main


@pytest.mark.parametrize("flags, absent, named", [
    ([], "onnx", "needs onnx: pip install onnx "),
    (["--dynamo"], "onnxscript", "with --dynamo needs onnxscript: pip install onnx onnxscript "),
    (["--dynamo"], "onnx", "with --dynamo needs onnx: pip install onnx onnxscript "),
])
def test_a_missing_package_is_named(flags, absent, named, monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == absent else real(name, *a))
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "m.onnx"), *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "onnxruntime" in err and len(err.strip().splitlines()) == 1
