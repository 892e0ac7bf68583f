"""The sections the modules' docstrings share, written once.

A line of a docstring that is exactly ``$NAME`` (indented as the section should be) is replaced by
the section ``NAME`` by ``documented``, so ``help(gatedrnn.LSTM)`` reads as one page in
``torch.nn``'s manner while each class's source keeps only what is its own.
"""
from __future__ import annotations

SECTIONS = {}

SECTIONS["SIZES"] = """\
input_size: The number of expected features in the input ``x``.
hidden_size: The number of features in the hidden state ``h``.
num_layers: Number of recurrent layers. E.g., setting ``num_layers=2`` stacks two layers, the
    second taking in the outputs of the first and computing the final results. Default: 1"""

SECTIONS["FLAGS"] = """\
bias: If ``False``, the layers do not use the bias weights ``b_ih`` and ``b_hh``. Default: ``True``
batch_first: If ``True``, the input and output tensors are ``(batch, seq, feature)`` instead of
    ``(seq, batch, feature)``. This does not apply to the states. Default: ``False``
dropout: If non-zero, a dropout layer on the outputs of each layer except the last, with this
    probability (a fresh mask per step, as in ``torch.nn``; see ``dropout_between`` for one mask
    per sequence). Default: 0
bidirectional: If ``True``, becomes a bidirectional module. Default: ``False``"""

SECTIONS["PROJ_SIZE"] = """\
proj_size: If ``> 0``, an LSTM with projections of that size (Sak et al. 2014): ``h_t = W_hr m_t``
    with ``weight_hr_l[k]`` of shape ``(proj_size, hidden_size)``; ``h`` and the output have
    ``proj_size`` features, ``c`` keeps ``hidden_size``. Must be smaller than ``hidden_size``.
    Default: 0"""

_ENGINE_TAIL = """\
    ``"fused"``: gatedrnn's engine, the input products of all steps hoisted out of the time loop
    and the hand-derived BPTT in one ``torch.autograd.Function`` per layer and direction (with
    specialised CPU loops where a benchmark showed they pay). ``"autograd"``: a plain loop over
    the cell's step, differentiated by autograd: the slow twin the others are tested against,
    and what ``torch.onnx`` and ``torch.jit.trace`` record for cells ``torch.nn`` lacks
    (``"reference"``, its name before 0.2, is still taken, with a ``DeprecationWarning``).
    ``"triton"``: the GPU engine, each step's elementwise work one Triton kernel (CUDA devices;
    on CPU only under ``TRITON_INTERPRET=1``, for tests).
    Every engine computes the same function to rounding (float64 tests hold them to 1e-10)."""

SECTIONS["ENGINE_NATIVE"] = """\
engine: Which code computes the sequence. ``"auto"`` (the default) runs PyTorch's own kernels
    (``torch._VF``: oneDNN on CPU, cuDNN on GPU; what ``torch.nn`` runs) when the configuration is
    exactly one ``torch.nn`` has (no gatedrnn option changed, no regularisation active in this
    mode but ``dropout``, a dtype those kernels take, CPU autocast only in bf16 on a processor that
    computes bf16 itself: ``native.native_bf16()``), else ``"fused"``
    (on a CUDA device with ``GATEDRNN_TRITON=1``, ``"triton"`` where it computes the configuration).
""" + _ENGINE_TAIL

SECTIONS["ENGINE_FUSED"] = """\
engine: Which code computes the sequence. ``"auto"`` (the default) is ``"fused"`` for this cell,
    which ``torch.nn`` has no kernel for (on a CUDA device with ``GATEDRNN_TRITON=1``, ``"triton"``
    where it computes the configuration).
""" + _ENGINE_TAIL

SECTIONS["FACTORY"] = """\
device: The device of the parameters. Default: the current default device.
dtype: The dtype of the parameters. Default: ``torch.get_default_dtype()``.
generator: The ``torch.Generator`` the regularisation masks below are drawn from, so that two
    engines given the same seed see the same masks. Default: ``None``, the global generator."""

SECTIONS["REGULARISATION"] = """\
zoneout, zoneout_h, zoneout_c: Zoneout (Krueger et al. 2017): in training each unit of the state
    keeps its previous value with this probability, per step; in evaluation the state is the
    expectation. ``zoneout`` sets ``h`` and, where the cell has one, ``c``. Default: 0
dropout_input, dropout_between, dropout_output: Variational (locked) dropout, one mask per
    sequence, of the first layer's input, of what each layer passes the next, of the last
    layer's output. Default: 0
dropout_state: Variational dropout of the ``h`` that feeds the recurrent product (Gal and
    Ghahramani 2016), one mask per sequence, layer and direction. Default: 0
weight_drop: DropConnect on ``weight_hh`` (Merity et al. 2018), one mask per call; the stored
    weight is unchanged. Default: 0"""

SECTIONS["LAYER_NORM"] = """\
layer_norm: If ``True``, layer normalisation of the input and recurrent pre-activations
    (``ln_weight_ih``, ``ln_weight_hh``, ``ln_bias_hh`` of shape ``(G*hidden_size,)``) and, in the
    LSTM family, of ``c_t`` (``ln_weight_c``, ``ln_bias_c``). Default: ``False``"""

SECTIONS["LSTM_OPTIONS"] = """\
forget_bias: A constant added to the forget gate's pre-activation at compute time, not stored
    (TensorFlow's ``BasicLSTMCell``). Default: 0.0
forget_bias_init: If set, the forget gate's block of ``bias_ih`` is initialised to this value and
    that of ``bias_hh`` to zero (stored; the computation is the plain one). Default: ``None``
$LAYER_NORM
input_activation, output_activation: ``"tanh"`` (default) or ``"identity"``: the activation of
    the candidate ``g`` and of ``c_t`` in ``h_t = o * act(c_t)`` (Greff et al. 2017)."""

SECTIONS["DROP_GATES"] = """\
drop_gates: Gates among ``"i"``, ``"f"``, ``"o"`` fixed at 1, their blocks removed from the
    weights (the others keep the order ``i, f, g, o``; Greff et al. 2017). Default: ``()``"""

_SHAPES = """\
where ``N`` is the batch size (``0`` gives empty outputs), ``L`` the sequence length (``> 0``),
``D`` 2 if ``bidirectional`` else 1, ``H_in`` ``input_size``,{cell} ``H_out`` {out}."""

SECTIONS["INPUTS_HC"] = """\
Inputs: input, (h_0, c_0)
    * **input**: ``(L, H_in)`` unbatched, ``(L, N, H_in)``, or ``(N, L, H_in)`` with
      ``batch_first=True``; or a ``torch.nn.utils.rnn.PackedSequence``.
    * **h_0**: ``(D * num_layers, H_out)`` unbatched or ``(D * num_layers, N, H_out)``: the
      initial hidden state of each layer and direction. Zeros if ``(h_0, c_0)`` is not given.
    * **c_0**: ``(D * num_layers, H_cell)`` or ``(D * num_layers, N, H_cell)``: the initial cell
      state.

""" + _SHAPES.format(cell=" ``H_cell`` ``hidden_size``,",
                     out="``proj_size`` if ``proj_size > 0`` else ``hidden_size``") + """

Outputs: output, (h_n, c_n)
    * **output**: ``(L, D * H_out)``, ``(L, N, D * H_out)`` or ``(N, L, D * H_out)``: ``h_t``
      of the last layer at every step (both directions concatenated); a ``PackedSequence`` if
      the input was one.
    * **h_n**: shaped as ``h_0``: the final hidden state of each layer and direction.
    * **c_n**: shaped as ``c_0``: the final cell state of each layer and direction."""

SECTIONS["INPUTS_H"] = """\
Inputs: input, h_0
    * **input**: ``(L, H_in)`` unbatched, ``(L, N, H_in)``, or ``(N, L, H_in)`` with
      ``batch_first=True``; or a ``torch.nn.utils.rnn.PackedSequence``.
    * **h_0**: ``(D * num_layers, H_out)`` unbatched or ``(D * num_layers, N, H_out)``: the
      initial hidden state of each layer and direction. Zeros if not given.

""" + _SHAPES.format(cell="", out="``hidden_size``") + """

Outputs: output, h_n
    * **output**: ``(L, D * H_out)``, ``(L, N, D * H_out)`` or ``(N, L, D * H_out)``: ``h_t``
      of the last layer at every step (both directions concatenated); a ``PackedSequence`` if
      the input was one.
    * **h_n**: shaped as ``h_0``: the final hidden state of each layer and direction."""

SECTIONS["ATTRIBUTES"] = """\
Attributes:
    weight_ih_l[k], weight_hh_l[k], bias_ih_l[k], bias_hh_l[k]: the weights and biases of layer
        ``k``, with ``torch.nn``'s names, shapes and gate order (``_reverse`` for the backward
        direction), so a ``torch.nn`` ``state_dict`` of the same configuration loads unchanged.
        Initialised from ``U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))`` as in ``torch.nn``.
    all_weights, _flat_weights, _flat_weights_names, mode: as in ``torch.nn.RNNBase``.
    cell: the configured cell of ``gatedrnn.cells`` whose math every engine runs."""

SECTIONS["NOTES"] = """\
``step(input, hx)`` runs one time step through every layer, ``input`` ``(N, H_in)`` or
``(H_in,)`` and ``hx`` as ``forward`` takes it, the way generation should (the sequence
kernels cost milliseconds per call at one step). Mistakes raise the exception ``torch.nn``
raises, with its wording, followed by what was expected and what was found."""

SECTIONS["CELL_INPUTS_HC"] = """\
Inputs: input, (h_0, c_0)
    * **input**: ``(N, H_in)`` or unbatched ``(H_in,)``.
    * **h_0**: ``(N, H_out)`` or ``(H_out,)``: the hidden state. Zeros if ``(h_0, c_0)`` is not given.
    * **c_0**: ``(N, hidden_size)`` or ``(hidden_size,)``: the cell state.

Outputs: (h_1, c_1)
    * **h_1**, **c_1**: the next state, shaped as ``h_0`` and ``c_0``.

where ``H_out`` is ``proj_size`` if ``proj_size > 0`` else ``hidden_size``. Sizes may be zero
(empty weights and states, as in ``torch.nn``)."""

SECTIONS["CELL_INPUTS_H"] = """\
Inputs: input, hidden
    * **input**: ``(N, input_size)`` or unbatched ``(input_size,)``.
    * **hidden**: ``(N, hidden_size)`` or ``(hidden_size,)``: the hidden state. Zeros if not given.

Outputs: h'
    * **h'**: ``(N, hidden_size)`` or ``(hidden_size,)``: the next hidden state.

Sizes may be zero (empty weights and states, as in ``torch.nn``)."""

SECTIONS["CELL_KEYWORDS"] = """\
device: The device of the parameters. Default: the current default device.
dtype: The dtype of the parameters. Default: ``torch.get_default_dtype()``.
generator: The ``torch.Generator`` zoneout's masks are drawn from. Default: ``None``, the global one.
zoneout, zoneout_h, zoneout_c: Zoneout (Krueger et al. 2017), per step: in training each unit
    keeps its previous value with this probability; in evaluation the expectation. Default: 0"""

SECTIONS["CELL_ATTRIBUTES"] = """\
Attributes:
    weight_ih, weight_hh, bias_ih, bias_hh: ``torch.nn``'s names, shapes and gate order, so a
        ``torch.nn`` cell's ``state_dict`` loads unchanged; the layer-0 parameters of the matching
        sequence module map onto them by dropping ``_l0``. Each step is the cell's own ``step``
        in torch ops, differentiated by autograd.
    cell: the configured cell of ``gatedrnn.cells`` whose math this runs."""


def _expand(doc: str) -> str:
    out = []
    for line in doc.splitlines():
        token = line.strip()
        if token.startswith("$") and token[1:] in SECTIONS:
            indent = line[: len(line) - len(line.lstrip())]
            section = _expand(SECTIONS[token[1:]])
            out.extend(indent + s if s else s for s in section.splitlines())
        else:
            out.append(line)
    return "\n".join(out)


def documented(cls):
    """Class decorator: expand the ``$SECTION`` lines of ``cls.__doc__``."""
    cls.__doc__ = _expand(cls.__doc__)
    return cls
