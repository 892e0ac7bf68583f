"""The LSTM family's parameter spec and options: names and shapes as DESIGN.md sets them."""
import numpy as np
import pytest

from gatedrnn.cells import NUMPY_OPS as ops
from gatedrnn.cells import make_cell
from gatedrnn.reference import init_params

I, H, P = 3, 4, 2


def shapes(name, input_size=I, hidden_size=H, **options):
    return {s.name: s.shape for s in make_cell(name, **options).param_spec(input_size, hidden_size)}


def linear(G, state_size=H):
    return {"weight_ih": (G * H, I), "weight_hh": (G * H, state_size), "bias_ih": (G * H,), "bias_hh": (G * H,)}


def test_lstm_spec_is_torch_layout():
    assert shapes("lstm") == linear(4)
    assert make_cell("lstm").gates == ("i", "f", "g", "o")


def test_peephole_adds_three_diagonal_blocks():
    assert shapes("peephole") == {**linear(4), "weight_peephole": (3 * H,)}
    assert make_cell("peephole").peep_gates == ("i", "f", "o")


def test_cifg_has_three_blocks():
    assert shapes("cifg") == linear(3)
    assert make_cell("cifg").gates == ("f", "g", "o")
    assert make_cell("cifg").num_gates == 3


@pytest.mark.parametrize("rounds, nq, nr", [(1, 1, 0), (2, 1, 1), (4, 2, 2), (5, 3, 2)])
def test_mogrifier_matrices(rounds, nq, nr):
    expected = {**linear(4), "weight_q": (nq, I, H)}
    if nr:
        expected["weight_r"] = (nr, H, I)
    assert shapes("mogrifier", rounds=rounds) == expected


def test_mogrifier_default_is_five_rounds():
    assert make_cell("mogrifier").rounds == 5
    assert shapes("mogrifier")["weight_q"] == (3, I, H) and shapes("mogrifier")["weight_r"] == (2, H, I)


def test_mogrifier_zero_rounds_has_the_lstm_spec():
    assert shapes("mogrifier", rounds=0) == shapes("lstm")


def test_mogrifier_low_rank_factors():
    assert shapes("mogrifier", rounds=5, rank=2) == {
        **linear(4),
        "weight_q_left": (3, I, 2), "weight_q_right": (3, 2, H),
        "weight_r_left": (2, H, 2), "weight_r_right": (2, 2, I),
    }


@pytest.mark.parametrize("name, G", [("lstm", 4), ("peephole", 4), ("cifg", 3), ("mogrifier", 4)])
def test_projection_reads_the_projected_h(name, G):
    spec = shapes(name, proj_size=P)
    assert spec["weight_hr"] == (P, H)
    assert spec["weight_hh"] == (G * H, P)
    assert spec["weight_ih"] == (G * H, I)
    if name == "peephole":
        assert spec["weight_peephole"] == (3 * H,)  # peepholes read c, which keeps size H
    if name == "mogrifier":
        assert spec["weight_q"] == (3, I, P) and spec["weight_r"] == (2, P, I)


@pytest.mark.parametrize("name, G", [("lstm", 4), ("peephole", 4), ("cifg", 3), ("mogrifier", 4)])
def test_layer_norm_names(name, G):
    spec = shapes(name, layer_norm=True)
    ln = {k: v for k, v in spec.items() if k.startswith("ln_")}
    assert ln == {
        "ln_weight_ih": (G * H,), "ln_weight_hh": (G * H,), "ln_bias_hh": (G * H,),
        "ln_weight_c": (H,), "ln_bias_c": (H,),
    }


def test_no_bias():
    assert shapes("lstm", bias=False) == {"weight_ih": (4 * H, I), "weight_hh": (4 * H, H)}


@pytest.mark.parametrize("drop, gates", [
    (("i",), ("f", "g", "o")), (("f",), ("i", "g", "o")), (("o",), ("i", "f", "g")),
    (("o", "i"), ("f", "g")), (("i", "f", "o"), ("g",)),
])
def test_drop_gates_shrinks_g_and_keeps_order(drop, gates):
    cell = make_cell("lstm", drop_gates=drop)
    assert cell.gates == gates
    assert shapes("lstm", drop_gates=drop) == linear(len(gates))


def test_forget_bias_is_a_python_float():
    a, b = make_cell("lstm", forget_bias=1), make_cell("lstm", forget_bias=np.float64(1.0))
    assert a == b and hash(a) == hash(b)
    assert type(b.forget_bias) is float


def test_drop_gates_none_drops_nothing():
    assert make_cell("lstm", drop_gates=None) == make_cell("lstm")


def test_drop_gates_as_a_string_is_refused_the_cli_parses_it():
    with pytest.raises(ValueError, match=r"a sequence of gates .* got the string 'o,i'"):
        make_cell("lstm", drop_gates="o,i")
    assert make_cell("lstm", drop_gates=["o", "i"]) == make_cell("lstm", drop_gates=("i", "o"))


def test_peephole_drop_gate_drops_its_peephole():
    spec = shapes("peephole", drop_gates=("o",))
    assert spec["weight_hh"] == (3 * H, H)
    assert spec["weight_peephole"] == (2 * H,)
    assert make_cell("peephole", drop_gates=("o",)).peep_gates == ("i", "f")


def test_forget_bias_init_is_stored_in_bias_ih():
    p = init_params("lstm", I, H, rng=0, forget_bias_init=1.0)
    np.testing.assert_array_equal(p["bias_ih"][H : 2 * H], 1.0)
    np.testing.assert_array_equal(p["bias_hh"][H : 2 * H], 0.0)
    assert not np.any(p["bias_ih"][:H] == 1.0)
    # CIFG's forget block is the first one
    p = init_params("cifg", I, H, rng=0, forget_bias_init=2.0)
    np.testing.assert_array_equal(p["bias_ih"][:H], 2.0)
    # without a dropped input gate the forget block moves forward
    p = init_params("lstm", I, H, rng=0, forget_bias_init=3.0, drop_gates=("i",))
    np.testing.assert_array_equal(p["bias_ih"][:H], 3.0)


def test_forget_bias_is_not_stored():
    a = init_params("lstm", I, H, rng=0)
    b = init_params("lstm", I, H, rng=0, forget_bias=1.0)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("options, message", [
    ({"drop_gates": ("g",)}, r"drop_gates takes gates among \('i', 'f', 'o'\), got \['g'\]"),
    ({"drop_gates": ["x", "o"]}, r"got \['x'\]"),
    ({"input_activation": "relu"}, r"input_activation must be one of \('tanh', 'identity'\), got 'relu'"),
    ({"output_activation": "sigmoid"}, r"output_activation must be one of .*got 'sigmoid'"),
    ({"proj_size": -1}, r"proj_size should be a non-negative integer, got -1"),
    ({"proj_size": 1.5}, r"proj_size should be a non-negative integer, got 1.5"),
    ({"proj_size": True}, r"proj_size should be a non-negative integer, got True"),
    ({"forget_bias": "1"}, r"forget_bias must be a number, got '1'"),
    ({"drop_gates": ("f",), "forget_bias": 1.0}, r"need the forget gate"),
    ({"drop_gates": ("f",), "forget_bias_init": 1.0}, r"need the forget gate"),
    ({"forget_bias_init": 1.0, "bias": False}, r"forget_bias_init is stored in the biases, but bias=False"),
])
def test_lstm_option_errors(options, message):
    with pytest.raises(ValueError, match=message):
        make_cell("lstm", **options)


def test_proj_size_must_be_smaller_than_hidden_size():
    with pytest.raises(ValueError, match=r"proj_size has to be smaller than hidden_size, got proj_size=4 and hidden_size=4"):
        make_cell("lstm", proj_size=4).param_spec(I, 4)


@pytest.mark.parametrize("options, message", [
    ({"rounds": -1}, r"rounds must be a non-negative integer, got -1"),
    ({"rounds": 2.0}, r"rounds must be a non-negative integer, got 2.0"),
    ({"rank": 0}, r"rank must be a positive integer or None, got 0"),
    ({"rank": "2"}, r"rank must be a positive integer or None, got '2'"),
])
def test_mogrifier_option_errors(options, message):
    with pytest.raises(ValueError, match=message):
        make_cell("mogrifier", **options)


@pytest.mark.parametrize("name", ["cifg", "mogrifier"])
def test_drop_gates_only_for_lstm_and_peephole(name):
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['drop_gates'\]"):
        make_cell(name, drop_gates=("o",))


@pytest.mark.parametrize("name", ["lstm", "peephole", "cifg", "gru", "rnn"])
def test_rounds_only_for_mogrifier(name):
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['rounds'\]"):
        make_cell(name, rounds=2)


@pytest.mark.parametrize("options", [{}, {"proj_size": P}, {"layer_norm": True}, {"drop_gates": ("f", "o")}])
def test_step_shapes(options):
    cell = make_cell("peephole", **options)
    p = init_params(cell, I, H, rng=0)
    B, R = 5, options.get("proj_size") or H
    x = np.random.default_rng(1).standard_normal((B, I))
    gx, in_cache = cell.input_proj(ops, p, x)
    assert gx.shape == (B, cell.num_gates * H)
    (h, c), cache = cell.step(ops, p, gx, (np.zeros((B, R)), np.zeros((B, H))))
    assert h.shape == (B, R) and c.shape == (B, H)
    dgx, (dh, dc) = cell.step_backward(ops, p, cache, (np.ones((B, R)), np.ones((B, H))), grads := {})
    assert dgx.shape == gx.shape and dh.shape == (B, R) and dc.shape == (B, H)
    dx = cell.input_proj_backward(ops, p, in_cache, dgx, grads)
    assert dx.shape == x.shape
    assert set(grads) == set(p)
    assert all(grads[k].shape == p[k].shape for k in p)
