"""A tiny corpus and model shared by the language-model training tests (fast on any CPU)."""
TEXT = "".join(f"def f{i}(x):\n    return x * {i % 7} + {i % 3}\n\n" for i in range(400))
MODEL = {"cell": "lstm", "hidden_size": 16, "num_layers": 1}
TRAIN = {"seq_len": 12, "batch_size": 4, "log_every": 1, "eval_every": 1000, "save_every": 1000, "warmup": 3,
         "device": "cpu", "eval_streams": 4}
CLI = ["--hidden-size", "16", "--seq-len", "12", "--batch-size", "4", "--log-every", "1", "--warmup", "3",
       "--device", "cpu", "--sample-length", "0", "--eval-streams", "4"]


def corpus_file(tmp_path):
    path = tmp_path / "code.txt"
    if not path.exists():
        path.write_text(TEXT)
    return path


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is fastest, and two threads thrash on a machine shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
