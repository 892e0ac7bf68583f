"""Sizes are checked before anything is allocated: the parameter count from the cells' specs is
exact for every cell and the options that change it, a model that does not fit the memory
available is refused in one line, and ``--skip-memory-check`` lets it through. (The absurd sizes
through the CLI: ``tests/cli/test_bad_input.py::test_sizes_no_machine_holds_are_refused_before_allocating``.)"""
from __future__ import annotations

import pytest

from gatedrnn.cells import CELLS
from gatedrnn.cli import main
from gatedrnn.models.lm import LanguageModel, LMConfig
from gatedrnn.training import sizing

from .helpers import TINY, corpus_file

SHAPES = [{}, {"num_layers": 3}, {"tie_weights": True}, {"embed_size": 5, "num_layers": 2},
          {"num_layers": 2, "sum_layer_outputs": True}]
OPTIONS = {"lstm": [{"proj_size": 3}, {"layer_norm": True}, {"drop_gates": "i,o"}, {"weight_drop": 0.3}],
           "mogrifier": [{"rounds": 3}, {"rounds": 4, "rank": 2}], "peephole": [{"proj_size": 2}]}


@pytest.mark.parametrize("cell", list(CELLS))
def test_the_count_from_the_specs_is_the_models(cell):
    for shape in SHAPES:
        for options in [{}, *OPTIONS.get(cell, [])]:
            try:
                cfg = LMConfig(vocab_size=11, cell=cell, hidden_size=6, cell_options=options, **shape)
            except ValueError:  # a combination the cell does not take (tying with a projection, ...)
                continue
            built = sum(p.numel() for p in LanguageModel(cfg).parameters())
            assert sizing.count_parameters(cfg) == built, (cell, shape, options)


def test_a_huge_count_costs_nothing_to_compute():
    cfg = LMConfig(vocab_size=100, hidden_size=10**7, num_layers=10**8)
    assert sizing.count_parameters(cfg) > 10**22  # no layer built, no loop over the layers


def test_a_model_that_does_not_fit_is_refused_and_the_flag_overrides(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sizing, "available_bytes", lambda device: 1000)  # a machine with 1000 bytes free
    argv = ["train", "--data", str(corpus_file(tmp_path)), *TINY, "--steps", "1"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "does not fit in memory" in err and "1000 bytes available" in err and "--skip-memory-check" in err, err
    assert not (tmp_path / "a").exists()  # refused before the folder was made
    assert main([*argv, "--out", str(tmp_path / "b"), "--skip-memory-check"]) == 0
    assert main(["eval", str(tmp_path / "b")]) == 2
    assert "does not fit in memory" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "b"), "--skip-memory-check"]) == 0
