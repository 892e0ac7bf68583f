"""Training-step time of the five matched language models, interleaved; the new cells with and
without the specialised loops (capability.ENABLED)."""
import statistics as st, sys, time
import torch
import torch.nn.functional as F
from gatedrnn.models.lm import LMConfig, LanguageModel
from gatedrnn.torch_engine import capability

torch.set_num_threads(1)
torch.manual_seed(0)
V, T, B = 148, 100, 32
sizes = {"lstm": 104, "slstm": 104, "mingru": 180, "minlstm": 155, "gru": 118}
variants = [(c, True) for c in sizes] + [(c, False) for c in ("slstm", "mingru", "minlstm")]
models = {}
for c, h in sizes.items():
    m = LanguageModel(LMConfig(vocab_size=V, cell=c, hidden_size=h))
    models[c] = (m, torch.optim.Adam(m.parameters(), lr=1e-4))
x = torch.randint(V, (T, B)); y = torch.randint(V, (T, B))

def step(c):
    m, opt = models[c]
    logits, _ = m(x)
    loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    opt.zero_grad(); loss.backward(); opt.step()

def timed(c, fast, n):
    capability.ENABLED = fast
    t0 = time.perf_counter()
    for _ in range(n):
        step(c)
    return (time.perf_counter() - t0) / n

for v in variants:
    timed(*v, 2)  # warm-up
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
ratios = {v: [] for v in variants}
times = {v: [] for v in variants}
for r in range(rounds):
    t = {v: timed(*v, 4) for v in variants}
    for v in variants:
        times[v].append(t[v]); ratios[v].append(t[v] / t[("lstm", True)])
for v in variants:
    name = v[0] + ("" if v[0] in ("lstm", "gru") else (" specialised loop" if v[1] else " generic loop"))
    print(f"{name:28s} median {st.median(times[v])*1e3:7.1f} ms/step  x{st.median(ratios[v]):.2f} LSTM "
          f"(per-round ratios {min(ratios[v]):.2f}-{max(ratios[v]):.2f})")
