"""Smoke test of ``gatedrnn bench``: tiny sizes, the JSON holds the rows and keys it promises.
No timing is asserted: times on shared machines say nothing at these sizes."""
import json

import pytest

from gatedrnn.cli import main


def test_bench_json_rows(tmp_path):
    out = tmp_path / "bench.json"
    code = main(["bench", "--cells", "lstm,gru,mogrifier", "--sizes", "8", "--seq-len", "3", "--batch-size", "2",
                 "--repeats", "1", "--kinds", "train,forward,generate", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert {"cpu", "torch", "date"} <= set(data["machine"])
    rows = data["rows"]
    seen = {(r["kind"], r["cell"], r["engine"]) for r in rows}
    for cell in ("lstm", "gru", "mogrifier"):
        for kind in ("train", "forward"):
            for engine in ("fused", "autograd", "torch"):
                assert (kind, cell, engine) in seen
        assert ("generate", cell, "fused") in seen and ("generate", cell, "torch") in seen
    gen = {(r["cell"], r["engine"]): r for r in rows if r["kind"] == "generate"}
    assert gen["lstm", "fused"]["weights_mib"] == pytest.approx(gen["lstm", "torch"]["weights_mib"])
    assert gen["mogrifier", "fused"]["weights_vs_torch"] > 1  # the rounds' matrices on top of the LSTM's
    assert ("train", "lstm", "auto") in seen and ("train", "mogrifier", "auto") not in seen
    assert ("train", "mogrifier", "products") in seen and ("generate", "lstm", "products") not in seen
    for r in rows:
        assert r["ms"] > 0 and r["size"] == 8 and r["seq_len"] == 3 and r["batch_size"] == 2
        if r["engine"] == "torch":
            assert r["vs_torch"] == pytest.approx(1.0)
        if r["engine"] == "products":
            assert r["vs_products"] == pytest.approx(1.0)


def test_bench_chained_floor_only_when_named(tmp_path):
    """``chained`` (the products with the recurrence's dependency) is measured when named, for the
    train and forward rows, with every row's ``vs_chained``; by default it is not."""
    out = tmp_path / "bench.json"
    args = ["bench", "--cells", "mogrifier", "--sizes", "8", "--seq-len", "3", "--batch-size", "2", "--repeats", "1",
            "--kinds", "train,forward,generate", "--json", str(out)]
    assert main(args + ["--engines", "fused,products,chained"]) == 0
    rows = json.loads(out.read_text())["rows"]
    seen = {(r["kind"], r["engine"]) for r in rows}
    assert {("train", "chained"), ("forward", "chained")} <= seen and ("generate", "chained") not in seen
    for r in rows:
        if r["kind"] != "generate":
            assert r["vs_chained"] > 0
        if r["engine"] == "chained":
            assert r["vs_chained"] == pytest.approx(1.0)
    assert main(args) == 0
    assert not any(r["engine"] == "chained" or r.get("vs_chained") for r in json.loads(out.read_text())["rows"])


def test_bench_memory_rows(tmp_path):
    out = tmp_path / "bench.csv"
    code = main(["bench", "--cells", "lstm", "--sizes", "8", "--seq-len", "3", "--batch-size", "2", "--repeats", "1",
                 "--engines", "fused,torch", "--kinds", "memory", "--csv", str(out)])
    assert code == 0
    lines = out.read_text().splitlines()
    header = lines[0].split(",")
    assert {"saved_mib", "peak_mib", "saved_vs_torch", "peak_vs_torch"} <= set(header)
    assert len(lines) == 3


def test_bench_rejects_unknown_names(capsys):
    assert main(["bench", "--cells", "lstn", "--sizes", "8"]) == 2
    assert main(["bench", "--engines", "cudnn", "--sizes", "8"]) == 2


def test_bench_autocast_and_module_options(tmp_path):
    out = tmp_path / "bench.json"
    code = main(["bench", "--cells", "lstm", "--sizes", "8", "--seq-len", "3", "--batch-size", "2", "--repeats", "1",
                 "--engines", "fused,torch", "--kinds", "train,forward", "--autocast", "bfloat16",
                 "--option", "layer_norm=true", "--option", "zoneout=0.1", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["kind"], r["engine"]) for r in rows} == {(k, e) for k in ("train", "forward") for e in ("fused", "torch")}
    assert all(r["autocast"] == "bfloat16" and json.loads(r["options"]) == {"layer_norm": True, "zoneout": 0.1}
               for r in rows)
    for r in rows:  # torch.nn.LSTM may refuse CPU bf16 autocast (oneDNN without AVX-512): then the row says why
        assert (r["ms"] > 0) if r["engine"] == "fused" else (r.get("error") or r["ms"] > 0)


def test_bench_rejects_a_malformed_option():
    assert main(["bench", "--cells", "lstm", "--sizes", "8", "--option", "layer_norm"]) == 2
