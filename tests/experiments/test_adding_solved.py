"""The promise of the README: with ``gatedrnn compare``'s defaults the LSTM solves the adding
problem at T=50 (MSE below 0.05, chance 0.167) within 1500 steps."""
from gatedrnn.experiments.compare import CompareConfig, train_run


def test_lstm_solves_adding_at_T50_with_the_defaults():
    config = CompareConfig(cells=("lstm",), task="adding", seq_len=50, stop_when_solved=True)
    assert config.steps == 1500 and config.hidden_size == 64 and config.lr == 1e-2 and config.batch_size == 32
    r = train_run("lstm", 0, config)
    assert r.steps_to_solve is not None and r.steps_to_solve <= 1500, r.curve
    assert r.final_metric < 0.05  # solved: 30% of chance (0.167)
