"""The regularisation flags of the command line: ``gatedrnn gradcheck --dropout-state``."""
from gatedrnn.cli import main


def test_gradcheck_with_state_dropout_and_zoneout(capsys):
    argv = ["gradcheck", "--cell", "lstm", "gru", "--seq-len", "3", "--batch-size", "2",
            "--dropout-state", "0.5", "--zoneout", "0.3"]
    assert main(argv) == 0
    assert capsys.readouterr().out.rstrip().endswith(": ok")


def test_gradcheck_refuses_a_state_dropout_of_one(capsys):
    assert main(["gradcheck", "--cell", "rnn", "--dropout-state", "1"]) == 2
    assert "--dropout-state must be in [0, 1), got 1.0" in capsys.readouterr().err


def test_compare_passes_every_option_to_the_cells_that_take_it():
    from gatedrnn.cli import build_parser
    from gatedrnn.cli.compare import cell_options
    from gatedrnn.data.tasks import make_task
    from gatedrnn.experiments.compare import build_model

    args = build_parser().parse_args([
        "compare", "--cells", "gru,lstm", "--zoneout", "0.1", "--dropout-state", "0.2", "--weight-drop", "0.3",
        "--dropout-input", "0.15", "--dropout-output", "0.25", "--drop-gates", "i", "--proj-size", "2",
        "--output-activation", "identity", "--layer-norm", "--forget-bias-init", "1.0"])
    options = cell_options(args)
    task = make_task("adding", 5)
    gru, lstm = (build_model(c, task, 4, options).rnn for c in ("gru", "lstm"))
    for module in (gru, lstm):
        reg = module.regularisation
        assert (reg.zoneout_h, reg.dropout_state, reg.weight_drop, reg.dropout_input, reg.dropout_output) == (
            0.1, 0.2, 0.3, 0.15, 0.25)
        assert module.cell.layer_norm
    assert gru.regularisation.zoneout_c == 0.0 and lstm.regularisation.zoneout_c == 0.1
    assert lstm.cell.gates == ("f", "g", "o") and lstm.proj_size == 2 and lstm.cell.output_activation == "identity"
    assert lstm.cell.forget_bias_init == 1.0


def test_train_flags_reach_the_language_model():
    from gatedrnn.cli import build_parser
    from gatedrnn.cli.train import explicit
    from gatedrnn.models.lm import LanguageModel, LMConfig

    args = build_parser().parse_args([
        "train", "--num-layers", "2", "--dropout-input", "0.1", "--dropout-state", "0.2", "--dropout-output", "0.3",
        "--dropout-between", "0.15", "--weight-drop", "0.4", "--zoneout", "0.05", "--embedding-dropout", "0.25",
        "--forget-bias-init", "1.0", "--layer-norm", "--drop-gates", "i", "--input-activation", "identity",
        "--output-activation", "identity"])
    _, model, cell_options = explicit(args)
    lm = LanguageModel(LMConfig(vocab_size=11, hidden_size=8, **model, cell_options=cell_options))
    reg = lm.rnn.regularisation
    assert (reg.dropout_input, reg.dropout_state, reg.dropout_output, reg.dropout_between, reg.weight_drop,
            reg.zoneout_h, reg.zoneout_c) == (0.1, 0.2, 0.3, 0.15, 0.4, 0.05, 0.05)
    assert lm.config.embedding_dropout == 0.25
    cell = lm.rnn.cell
    assert cell.layer_norm and cell.gates == ("f", "g", "o") and cell.forget_bias_init == 1.0
    assert (cell.input_activation, cell.output_activation) == ("identity", "identity")
    assert (lm.rnn.bias_ih_l1[:8] == 1.0).all()  # the forget block, first of f, g, o
