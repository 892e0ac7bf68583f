"""The cell protocol shared by every cell: registry, option validation, helpers of ``base``."""
import numpy as np
import pytest

from gatedrnn.cells import CELLS, NUMPY_OPS, Cell, ParamSpec, init_array, make_cell
from gatedrnn.cells.base import (
    accumulate,
    activate,
    activate_grad,
    layer_norm,
    layer_norm_backward,
    rows_t_at,
    sum_rows,
)

ops = NUMPY_OPS


def test_registry_names():
    assert list(CELLS) == ["rnn", "lstm", "peephole", "cifg", "gru", "mogrifier", "slstm", "mingru", "minlstm", "indrnn"]
    for name, cls in CELLS.items():
        assert cls.name == name
        assert make_cell(name).name == name


def test_state_layout():
    for name in ("rnn", "gru"):
        assert not make_cell(name).has_cell_state
        assert make_cell(name).state_sizes(4) == (4,)
    for name in ("lstm", "peephole", "cifg", "mogrifier"):
        assert make_cell(name).has_cell_state
        assert make_cell(name).state_sizes(4) == (4, 4)
        assert make_cell(name, proj_size=2).state_sizes(4) == (2, 4)
        assert make_cell(name, proj_size=2).output_size(4) == 2


def test_unknown_cell_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown cell 'lstn'.*did you mean 'lstm'"):
        make_cell("lstn")
    with pytest.raises(ValueError, match=r"did you mean 'mogrifier'"):
        make_cell("mogrifer")


def test_unknown_cell_without_close_name_lists_all():
    with pytest.raises(ValueError) as err:
        make_cell("transformer")
    message = str(err.value)
    assert "did you mean" not in message
    for name in CELLS:
        assert name in message


@pytest.mark.parametrize("name", list(CELLS))
def test_unknown_option_is_named(name):
    with pytest.raises(ValueError, match=rf"cell '{name}' got unknown option\(s\) \['hiden_size'\]"):
        make_cell(name, hiden_size=3)


@pytest.mark.parametrize("name", list(CELLS))
def test_bias_and_layer_norm_must_be_bool(name):
    with pytest.raises(ValueError, match="bias must be True or False, got 1"):
        make_cell(name, bias=1)
    if "layer_norm" not in CELLS[name].options:
        return
    with pytest.raises(ValueError, match="layer_norm must be True or False, got 'yes'"):
        make_cell(name, layer_norm="yes")


def test_make_cell_passes_a_cell_through_or_reconfigures_it():
    cell = make_cell("lstm", forget_bias=1.0)
    assert make_cell(cell) is cell
    changed = make_cell(cell, proj_size=2)
    assert changed == make_cell("lstm", forget_bias=1.0, proj_size=2)
    assert cell.proj_size == 0  # the original is left as it was


def test_equality_hash_and_repr():
    a, b = make_cell("lstm", forget_bias=1.0), make_cell("lstm", forget_bias=1.0)
    assert a == b and hash(a) == hash(b)
    assert a != make_cell("lstm") and a != make_cell("peephole", forget_bias=1.0)
    assert repr(a) == "LSTMMath(forget_bias=1.0)"
    assert repr(make_cell("gru")) == "GRUMath()"
    assert isinstance(a, Cell)


@pytest.mark.parametrize("name", ["rnn", "gru"])
def test_linear_spec_of_single_state_cells(name):
    G = {"rnn": 1, "gru": 3}[name]
    spec = {s.name: s.shape for s in make_cell(name).param_spec(3, 4)}
    assert spec == {"weight_ih": (G * 4, 3), "weight_hh": (G * 4, 4), "bias_ih": (G * 4,), "bias_hh": (G * 4,)}
    assert {s.name for s in make_cell(name, bias=False).param_spec(3, 4)} == {"weight_ih", "weight_hh"}
    ln = {s.name: s.shape for s in make_cell(name, layer_norm=True).param_spec(3, 4)}
    assert ln == {**spec, "ln_weight_ih": (G * 4,), "ln_weight_hh": (G * 4,), "ln_bias_hh": (G * 4,)}


def test_default_init_matches_torch_bounds():
    # torch.nn.RNN/LSTM/GRU draw every weight and bias from U(-1/sqrt(H), 1/sqrt(H))
    spec = make_cell("lstm", layer_norm=True).param_spec(3, 16)
    for s in spec:
        if s.name.startswith("ln_weight"):
            assert s.init == "ones"
        elif s.name.startswith("ln_bias"):
            assert s.init == "zeros"
        else:
            assert s.init == "uniform" and s.bound == 0.25


def test_init_array_honours_fill_and_dtype():
    rng = np.random.default_rng(0)
    spec = ParamSpec("bias_ih", (8,), bound=0.5, fill=((2, 4, 1.0),))
    a = init_array(spec, rng, np.float32)
    assert a.dtype == np.float32 and a.shape == (8,)
    np.testing.assert_array_equal(a[2:4], [1.0, 1.0])
    assert np.all(np.abs(np.delete(a, [2, 3])) <= 0.5)
    np.testing.assert_array_equal(init_array(ParamSpec("g", (3,), init="ones"), rng), np.ones(3))
    np.testing.assert_array_equal(init_array(ParamSpec("b", (3,), init="zeros"), rng), np.zeros(3))
    with pytest.raises(ValueError, match="unknown init 'normal'"):
        init_array(ParamSpec("w", (2,), init="normal"), rng)


def test_sigmoid_is_stable_at_extremes():
    a = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(all="raise"):
        s = ops.sigmoid(a)
    np.testing.assert_allclose(s, 1.0 / (1.0 + np.exp(-np.clip(a, -700, 700))), rtol=0, atol=1e-15)
    assert s[0] == 0.0 and s[-1] == 1.0 and s[2] == 0.5


def test_activation_derivatives_from_outputs():
    a = np.linspace(-2, 2, 9)
    y = activate(ops, "tanh", a)
    np.testing.assert_allclose(activate_grad("tanh", y), 1.0 / np.cosh(a) ** 2, rtol=1e-12)
    np.testing.assert_array_equal(activate(ops, "identity", a), a)
    assert activate_grad("identity", a) == 1.0


def test_layer_norm_normalises_last_axis():
    a = np.random.default_rng(0).standard_normal((5, 12)) * 3 + 2
    a_hat, rstd = layer_norm(ops, a)
    assert rstd.shape == (5, 1)
    np.testing.assert_allclose(a_hat.mean(-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(a_hat.var(-1), 1.0, rtol=1e-5)  # eps = 1e-5 sits inside the root


def test_layer_norm_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    a, d_hat = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    a_hat, rstd = layer_norm(ops, a)
    da = layer_norm_backward(d_hat, a_hat, rstd, ops)
    num = np.zeros_like(a)
    eps = 1e-6
    for k in np.ndindex(a.shape):
        plus, minus = a.copy(), a.copy()
        plus[k] += eps
        minus[k] -= eps
        num[k] = ((layer_norm(ops, plus)[0] - layer_norm(ops, minus)[0]) * d_hat).sum() / (2 * eps)
    np.testing.assert_allclose(da, num, rtol=1e-6, atol=1e-8)


def test_gradient_helpers():
    grads = {}
    accumulate(grads, "w", np.ones(2))
    accumulate(grads, "w", np.ones(2))
    np.testing.assert_array_equal(grads["w"], [2.0, 2.0])
    a = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(sum_rows(a), a.sum((0, 1)))
    b = np.arange(12.0).reshape(2, 3, 2)
    np.testing.assert_array_equal(rows_t_at(a, b), np.einsum("tbn,tbm->nm", a, b))
