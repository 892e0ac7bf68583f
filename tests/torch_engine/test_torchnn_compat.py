"""Code written for ``torch.nn``'s recurrent modules, run unchanged against gatedrnn's classes.

Each test is a piece of ordinary ``torch.nn`` usage, written from ``torch.nn``'s documentation
and its observed behaviour (torch 2.x), run once with ``torch.nn`` and once with ``gatedrnn`` in
every engine; the two runs must agree: the same attributes, shapes and values (float64, same
seed: both initialise the same parameters in the same order), the same exception types with
``torch.nn``'s message contained in gatedrnn's, the same behaviour after copying, pickling and
conversions. Sizes are tiny, so the file runs in seconds.
"""
from __future__ import annotations

import copy
import io
import pickle
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import gatedrnn

F64 = torch.float64
AUTOGRAD = "autograd"  # the plain autograd loop
TOL = dict(rtol=1e-10, atol=1e-12)  # float64; the engines differ from torch.nn in summation order only

SEQUENCE = ("LSTM", "GRU", "RNN")
CELLS = ("LSTMCell", "GRUCell", "RNNCell")
ENGINE_IDS = ("auto", "fused", AUTOGRAD)


def make(impl: str, name: str, *args, **kwargs):
    """``torch.nn.<name>(*args, **kwargs)`` or gatedrnn's, the latter with ``engine`` = ``impl``."""
    if impl == "torch.nn":
        return getattr(torch.nn, name)(*args, **kwargs)
    engine = {} if name.endswith("Cell") else {"engine": impl}
    return getattr(gatedrnn, name)(*args, **kwargs, **engine)


def both(impl, name, *args, seed=0, **kwargs):
    """The ``torch.nn`` module and gatedrnn's, built under the same seed (so equal weights)."""
    torch.manual_seed(seed)
    ref = make("torch.nn", name, *args, **kwargs)
    torch.manual_seed(seed)
    ours = make(impl, name, *args, **kwargs)
    return ref, ours


def assert_same(a, b, what=""):
    """Nested tuples/lists of tensors (or PackedSequences) equal in structure, shape and value."""
    if isinstance(a, torch.nn.utils.rnn.PackedSequence):
        assert isinstance(b, torch.nn.utils.rnn.PackedSequence), what
        assert torch.equal(a.batch_sizes, b.batch_sizes), what
        return assert_same(a.data, b.data, what)
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), (what, type(b))
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{what}[{k}]")
        return
    assert isinstance(b, torch.Tensor), (what, type(b))
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    torch.testing.assert_close(b, a, **TOL, msg=what)


ATTRIBUTES = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
              "proj_size", "mode", "nonlinearity", "_flat_weights_names", "_all_weights")


def assert_same_surface(ref, ours):
    for attr in ATTRIBUTES:
        assert hasattr(ours, attr) == hasattr(ref, attr), attr
        if hasattr(ref, attr):
            assert getattr(ours, attr) == getattr(ref, attr), (attr, getattr(ours, attr), getattr(ref, attr))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in ref.named_parameters()]
    assert_same(list(ref.parameters()), list(ours.parameters()), "parameters")
    if hasattr(ref, "all_weights"):
        assert_same(ref.all_weights, ours.all_weights, "all_weights")
        assert_same(ref._flat_weights, ours._flat_weights, "_flat_weights")
        assert all(w is getattr(ours, n) for w, n in zip(ours._flat_weights, ours._flat_weights_names))
    assert ours.extra_repr() == ref.extra_repr()
    assert repr(ours).split("(")[0] == repr(ref).split("(")[0]


# -- construction in every argument form ---------------------------------------------------
CONSTRUCTIONS = {
    "LSTM": [((3, 4), {}), ((3, 4, 2), {}), ((3, 4, 2, False, True, 0.5, True, 2), {}),
             ((3, 4), dict(num_layers=2, bias=False, batch_first=True, dropout=0.25, bidirectional=True, proj_size=3)),
             ((3,), dict(hidden_size=4, proj_size=1)), ((), dict(input_size=3, hidden_size=4, dtype=F64))],
    "GRU": [((3, 4), {}), ((3, 4, 3, False, True, 0.5, True), {}),
            ((3, 4), dict(num_layers=2, bidirectional=True, dtype=F64)), ((), dict(input_size=3, hidden_size=4))],
    "RNN": [((3, 4), {}), ((3, 4, 2, "relu"), {}), ((3, 4, 2, "relu", False, True, 0.5, True), {}),
            ((3, 4), dict(nonlinearity="relu", num_layers=2, bias=False)), ((3, 4, 1, "tanh"), dict(batch_first=True))],
    "LSTMCell": [((3, 4), {}), ((3, 4, False), {}), ((3, 4), dict(bias=False, dtype=F64))],
    "GRUCell": [((3, 4), {}), ((3, 4, False), {}), ((), dict(input_size=3, hidden_size=4))],
    "RNNCell": [((3, 4), {}), ((3, 4, True, "relu"), {}), ((3, 4), dict(nonlinearity="relu", bias=False))],
}


@pytest.mark.parametrize("name, args, kwargs", [(n, a, k) for n, forms in CONSTRUCTIONS.items() for a, k in forms])
def test_construction_gives_the_same_module(name, args, kwargs):
    with pytest.warns(UserWarning, match="dropout") if kwargs.get("dropout", args[5] if len(args) > 5 else 0) and \
            kwargs.get("num_layers", args[2] if len(args) > 2 else 1) == 1 else _no_warning():
        ref, ours = both("auto", name, *args, **kwargs)
    assert_same_surface(ref, ours)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# -- forward in every input form, every engine ---------------------------------------------
FORMS = {
    "batched": lambda m, gen: m(torch.randn(5, 2, 3, generator=gen, dtype=F64)),
    "unbatched": lambda m, gen: m(torch.randn(5, 3, generator=gen, dtype=F64)),
    "with_state": lambda m, gen: m(torch.randn(5, 2, 3, generator=gen, dtype=F64), _state(m, 2, gen)),
    "unbatched_with_state": lambda m, gen: m(torch.randn(5, 3, generator=gen, dtype=F64), _state(m, None, gen)),
    "packed": lambda m, gen: m(pack_padded_sequence(torch.randn(5, 3, 3, generator=gen, dtype=F64),
                                                    torch.tensor([5, 2, 3]), enforce_sorted=False)),
}


def _state(m, B, gen):
    B = 5 if B and m.batch_first else B  # the batch of FORMS' (5, 2, 3) input
    L = m.num_layers * (2 if m.bidirectional else 1)
    shape = (L,) if B is None else (L, B)
    h = torch.randn(*shape, m.proj_size or m.hidden_size, generator=gen, dtype=F64)
    if m.mode != "LSTM":
        return h
    return h, torch.randn(*shape, m.hidden_size, generator=gen, dtype=F64)


@pytest.mark.parametrize("engine", ENGINE_IDS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name, kwargs", [
    ("LSTM", {}), ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=2)), ("GRU", dict(num_layers=2)),
    ("RNN", dict(nonlinearity="relu", bidirectional=True)), ("GRU", dict(batch_first=True)),
])
def test_forward_outputs_states_and_gradients_agree(name, kwargs, form, engine):
    ref, ours = both(engine, name, 3, 4, dtype=F64, **kwargs)
    results = []
    for m in (ref, ours):
        out = FORMS[form](m, torch.Generator().manual_seed(1))
        y = out[0].data if isinstance(out[0], torch.nn.utils.rnn.PackedSequence) else out[0]
        (y.sum() + sum(s.square().sum() for s in (out[1] if isinstance(out[1], tuple) else (out[1],)))).backward()
        results.append((out, [p.grad for p in m.parameters()]))
    assert_same(results[0], results[1], f"{name} {form}")


# -- errors: torch.nn's type, torch.nn's words ----------------------------------------------
CONSTRUCTOR_ERRORS = [
    ("LSTM", (0, 4), {}), ("LSTM", (3, 0), {}), ("GRU", (3, 4, 0), {}), ("RNN", (3, -1), {}),
    ("LSTM", (3, 4.0), {}), ("GRU", (3.0, 4), {}), ("LSTM", (3, 4), dict(dropout=1.5)),
    ("GRU", (3, 4, 2), dict(dropout=True)), ("LSTM", (3, 4), dict(proj_size=-1)), ("LSTM", (3, 4), dict(proj_size=4)),
    ("GRU", (3, 4), dict(proj_size=1)), ("RNN", (3, 4), dict(proj_size=1)), ("RNN", (3, 4, 1, "gelu"), {}),
    ("RNN", (3, 4), dict(nonlinearity="sigmoid")), ("LSTM", (3, 4), dict(bias="yes")),
    ("GRU", (3, 4), dict(batch_first=1)),
]


def _error(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the test compares whatever both raise
        return e
    raise AssertionError("no exception raised")


def assert_same_error(ref_fn, ours_fn):
    expected, got = _error(ref_fn), _error(ours_fn)
    assert isinstance(got, type(expected)), (type(got), type(expected), str(got))
    assert str(expected) in str(got), (str(expected), str(got))
    assert len(str(got)) >= len(str(expected))


@pytest.mark.parametrize("name, args, kwargs", CONSTRUCTOR_ERRORS)
def test_constructor_errors_are_torch_nn_errors(name, args, kwargs):
    assert_same_error(lambda: make("torch.nn", name, *args, **kwargs), lambda: make("auto", name, *args, **kwargs))


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("args, expected", [((3, -1), RuntimeError), ((-2, 4), RuntimeError), ((3, 4.0), TypeError)])
def test_cell_constructor_errors_are_torch_nn_errors(name, args, expected):
    # torch.nn's cells fail in torch.empty; the message starts the same, then says which argument
    ref, got = _error(lambda: make("torch.nn", name, *args)), _error(lambda: make("auto", name, *args))
    assert isinstance(ref, expected) and isinstance(got, expected), (type(ref), type(got))
    words = "Trying to create tensor with negative dimension" if expected is RuntimeError else "tuple of ints"
    assert words in str(ref), str(ref)  # what torch.nn says, so that the check below means something
    ours = words if expected is RuntimeError else "should be of type int"
    assert ours in str(got) and ("hidden_size" in str(got) or "input_size" in str(got)), str(got)


x10 = torch.randn(5, 3, 10)
FORWARD_ERRORS = {
    "input_size": ("LSTM", lambda m: m(torch.randn(5, 3, 11))),
    "input_size_gru": ("GRU", lambda m: m(torch.randn(5, 3, 11))),
    "rank_4": ("LSTM", lambda m: m(torch.randn(5, 3, 10, 1))),
    "rank_1": ("RNN", lambda m: m(torch.randn(10))),
    "zero_steps": ("LSTM", lambda m: m(torch.randn(0, 3, 10))),
    "zero_steps_unbatched": ("GRU", lambda m: m(torch.randn(0, 10))),
    "h_size": ("LSTM", lambda m: m(x10, (torch.zeros(1, 3, 19), torch.zeros(1, 3, 20)))),
    "c_size": ("LSTM", lambda m: m(x10, (torch.zeros(1, 3, 20), torch.zeros(1, 3, 19)))),
    "h_layers": ("LSTM", lambda m: m(x10, (torch.zeros(2, 3, 20), torch.zeros(2, 3, 20)))),
    "h_batch": ("GRU", lambda m: m(x10, torch.zeros(1, 4, 20))),
    "h_rank": ("GRU", lambda m: m(x10, torch.zeros(3, 20))),
    "hc_rank": ("LSTM", lambda m: m(x10, (torch.zeros(3, 20), torch.zeros(3, 20)))),
    "hc_rank_unbatched": ("LSTM", lambda m: m(x10[:, 0], (torch.zeros(1, 1, 20), torch.zeros(1, 1, 20)))),
    "three_states": ("LSTM", lambda m: m(x10, (torch.zeros(1, 3, 20),) * 3)),
    "dtype": ("LSTM", lambda m: m(x10.double())),
    "integer_input": ("GRU", lambda m: m(x10.long())),
    "device": ("RNN", lambda m: m(torch.zeros(5, 3, 10, device="meta"))),
    "cell_input_size": ("LSTMCell", lambda m: m(torch.randn(3, 11))),
    "cell_rank": ("GRUCell", lambda m: m(torch.randn(1, 3, 10))),
    "cell_h_size": ("LSTMCell", lambda m: m(torch.randn(3, 10), (torch.zeros(3, 19), torch.zeros(3, 20)))),
    "cell_c_size": ("LSTMCell", lambda m: m(torch.randn(3, 10), (torch.zeros(3, 20), torch.zeros(3, 19)))),
    "cell_h_batch": ("RNNCell", lambda m: m(torch.randn(3, 10), torch.zeros(4, 20))),
    "cell_h_rank": ("GRUCell", lambda m: m(torch.randn(3, 10), torch.zeros(1, 3, 20))),
    "cell_hx_rank": ("LSTMCell", lambda m: m(torch.randn(3, 10), (torch.zeros(1, 3, 20), torch.zeros(1, 3, 20)))),
}


@pytest.mark.parametrize("case", FORWARD_ERRORS)
def test_forward_errors_are_torch_nn_errors(case):
    name, call = FORWARD_ERRORS[case]
    ref, ours = both("auto", name, 10, 20)
    assert_same_error(lambda: call(ref), lambda: call(ours))


# -- zero sizes -------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINE_IDS)
@pytest.mark.parametrize("name, kwargs", [
    ("LSTM", {}), ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=2)), ("GRU", dict(batch_first=True)),
    ("RNN", dict(num_layers=2)),
])
def test_empty_batch_gives_empty_outputs(name, kwargs, engine):
    ref, ours = both(engine, name, 3, 4, dtype=F64, **kwargs)
    x = torch.randn(0, 5, 3, dtype=F64) if kwargs.get("batch_first") else torch.randn(5, 0, 3, dtype=F64)
    results = []
    for m in (ref, ours):
        out, state = m(x)
        out.sum().backward()
        results.append((out, state, [torch.zeros_like(p) if p.grad is None else p.grad for p in m.parameters()]))
    assert_same(results[0], results[1])


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("input_size, hidden_size, batch", [(3, 0, 2), (0, 4, 2), (3, 4, 0), (0, 0, 0)])
def test_cells_take_zero_sizes(name, input_size, hidden_size, batch):
    ref, ours = both("auto", name, input_size, hidden_size, dtype=F64)
    assert_same_surface(ref, ours)
    x = torch.randn(batch, input_size, dtype=F64)
    assert_same(ref(x), ours(x), name)
    one = torch.randn(input_size, dtype=F64)  # unbatched
    assert_same(ref(one), ours(one), name)


# -- batched gradients: per-sample gradients with torch.func ---------------------------------
@pytest.mark.parametrize("engine", ENGINE_IDS)
@pytest.mark.parametrize("name", SEQUENCE)
def test_per_sample_gradients_with_vmap(name, engine):
    """Opacus-style per-sample gradients: ``vmap(grad(loss))`` over a batch of unbatched sequences
    through gatedrnn equals ``torch.nn``'s gradient of each sample alone (torch.nn itself cannot be
    vmapped in float64 on CPU: its oneDNN path has no batching rule)."""
    from torch.func import functional_call, grad, vmap

    ref, ours = both(engine, name, 3, 4, dtype=F64)
    x = torch.randn(4, 5, 3, dtype=F64)  # 4 samples, each an unbatched (T=5, I=3) sequence
    params = {k: v.detach() for k, v in ours.named_parameters()}

    def loss(p, sample):
        out, _ = functional_call(ours, p, (sample,))
        return out.square().sum()

    batched = vmap(grad(loss), in_dims=(None, 0))(params, x)
    for n in range(x.shape[0]):
        ref.zero_grad()
        ref(x[n])[0].square().sum().backward()
        assert_same([p.grad for p in ref.parameters()], [batched[k][n] for k in params], f"sample {n}")


# -- copies, pickles, saved modules, conversions ---------------------------------------------
def _roundtrips():
    def saved(m):
        buf = io.BytesIO()
        torch.save(m, buf)
        buf.seek(0)
        return torch.load(buf, weights_only=False)

    return {"deepcopy": copy.deepcopy, "pickle": lambda m: pickle.loads(pickle.dumps(m)), "torch.save": saved}


@pytest.mark.parametrize("how", _roundtrips())
@pytest.mark.parametrize("name, kwargs", [("LSTM", dict(num_layers=2, proj_size=2)), ("GRU", {}),
                                          ("RNN", dict(nonlinearity="relu")), ("LSTMCell", {}), ("GRUCell", {})])
def test_copied_pickled_and_saved_modules_work(name, kwargs, how):
    ref, ours = both("auto", name, 3, 4, dtype=F64, **kwargs)
    ref2, ours2 = _roundtrips()[how](ref), _roundtrips()[how](ours)
    assert_same_surface(ref2, ours2)
    x = torch.randn(5, 3, dtype=F64)
    assert_same(ref2(x), ours2(x))
    assert_same(ours(x), ours2(x))
    assert ours2.weight_ih_l0 is not ours.weight_ih_l0 if hasattr(ours, "weight_ih_l0") else True


@pytest.mark.parametrize("name", SEQUENCE)
def test_conversions_refresh_the_flat_weights(name):
    ref, ours = both("auto", name, 3, 4, num_layers=2)
    for convert in (lambda m: m.double(), lambda m: m.to(torch.float32), lambda m: m.half(), lambda m: m.float()):
        ref, ours = convert(ref), convert(ours)
        assert_same_surface(ref, ours)
        assert ours._flat_weights[0].dtype == ref._flat_weights[0].dtype
    ref.double(), ours.double()
    x = torch.randn(5, 2, 3, dtype=F64)
    assert_same(ref(x), ours(x))


@pytest.mark.parametrize("name", SEQUENCE)
def test_assigned_weights_are_seen_in_flat_weights_and_state_dict_loads_across(name):
    ref, ours = both("auto", name, 3, 4, dtype=F64)
    for m in (ref, ours):
        m.weight_hh_l0 = torch.nn.Parameter(torch.ones_like(m.weight_hh_l0))
        assert m._flat_weights[1] is m.weight_hh_l0
        m.flatten_parameters()
    x = torch.randn(5, 2, 3, dtype=F64)
    assert_same(ref(x), ours(x))
    torch.manual_seed(3)
    fresh = make("auto", name, 3, 4, dtype=F64)
    fresh.load_state_dict(ref.state_dict())
    assert_same(ref(x), fresh(x))


def test_unpacked_outputs_of_packed_input_match():
    ref, ours = both("auto", "LSTM", 3, 4, dtype=F64, bidirectional=True)
    x = torch.randn(5, 3, 3, dtype=F64)
    packed = pack_padded_sequence(x, torch.tensor([5, 2, 3]), enforce_sorted=False)
    y_ref, n_ref = pad_packed_sequence(ref(packed)[0])
    y_ours, n_ours = pad_packed_sequence(ours(packed)[0])
    assert_same((y_ref, n_ref), (y_ours, n_ours))


# -- signatures: torch.nn's arguments in torch.nn's order, with its defaults ----------------------
def _torch_signature(name):
    import inspect

    if name.endswith("Cell"):
        params = list(inspect.signature(getattr(torch.nn, name).__init__).parameters.values())[1:]
    else:  # torch.nn.LSTM/GRU/RNN take *args into RNNBase(mode, ...); RNN moves nonlinearity fourth
        params = list(inspect.signature(torch.nn.RNNBase.__init__).parameters.values())[2:]
        if name != "LSTM":
            params = [p for p in params if p.name != "proj_size"]
        if name == "RNN":
            params.insert(3, inspect.Parameter("nonlinearity", inspect.Parameter.POSITIONAL_OR_KEYWORD, default="tanh"))
    return [(p.name, p.default) for p in params if p.name not in ("device", "dtype")]


@pytest.mark.parametrize("name", SEQUENCE + CELLS)
def test_signature_is_torch_nns(name):
    import inspect

    ours = inspect.signature(getattr(gatedrnn, name)).parameters.values()
    positional = [(p.name, p.default) for p in ours if p.kind == p.POSITIONAL_OR_KEYWORD]
    keyword = {p.name: p.default for p in ours if p.kind == p.KEYWORD_ONLY}
    assert positional == _torch_signature(name)
    assert keyword["device"] is None and keyword["dtype"] is None  # keyword-only here


@pytest.mark.skipif(not torch.cuda.is_available(), reason="cuDNN's flattened weights need a CUDA device")
@pytest.mark.parametrize("name", SEQUENCE)
def test_cuda_weights_flattened_for_cudnn_as_torch_nn(name):
    """On CUDA, torch.nn keeps its weights in one buffer for cuDNN (flatten_parameters, again after
    .to()); so does gatedrnn, so cuDNN neither compacts them at each call nor warns about it."""
    ref, ours = both("auto", name, 3, 4, num_layers=2, bidirectional=True)
    ref, ours = ref.cuda(), ours.cuda()
    x = torch.randn(5, 2, 3, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same(ref(x), ours(x))
    def buffers(m):  # how many storages the weights live in
        return len({w.untyped_storage().data_ptr() for w in m._flat_weights})

    assert buffers(ours) == buffers(ref) == 1
