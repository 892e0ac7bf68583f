"""The script a user would write instead of gatedrnn: a plain PyTorch character LSTM.

    python benchmarks/baseline_char_lstm.py notes.txt --minutes 2     # prints one JSON line
    python benchmarks/baseline_char_lstm.py notes.txt --steps 2500    # a fixed number of steps

Embedding 128, one torch.nn.LSTM of 512, sequences of 128, batch 32, Adam 2e-3, gradient norm
clipped at 1, stateful truncated BPTT over 32 contiguous streams of the first nine tenths, the
process's default threads, trained for a wall-clock budget; then the loss in nats per character
on the last tenth, read as one stream with the state carried (what `gatedrnn eval --data` does).
"""
import argparse, json, os, time

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("text")
p.add_argument("--minutes", type=float, default=2.0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--steps", type=int, default=0,
               help="stop after this many steps instead of the clock (the steps a budget gives on an idle machine)")
args = p.parse_args()
torch.manual_seed(args.seed)
text = open(args.text, encoding="utf-8").read()
chars = sorted(set(text))
lookup = {c: i for i, c in enumerate(chars)}
data = torch.tensor([lookup[c] for c in text], dtype=torch.long)
cut = int(round(len(data) * 0.9))
train, held = data[:cut], data[cut:]
B, T = 32, 128
streams = train[: len(train) // B * B].view(B, -1).t()  # (N, B): 32 contiguous streams


class CharLSTM(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed, self.lstm, self.out = nn.Embedding(vocab, 128), nn.LSTM(128, 512), nn.Linear(512, vocab)

    def forward(self, x, state=None):
        y, state = self.lstm(self.embed(x), state)
        return self.out(y), state


model = CharLSTM(len(chars))
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
state, pos, steps, t0 = None, 0, 0, time.monotonic()
while (steps < args.steps) if args.steps else (time.monotonic() - t0 < args.minutes * 60):
    if pos + T + 1 > streams.shape[0]:
        pos, state = 0, None  # a new epoch: the streams start over
    x, y = streams[pos : pos + T], streams[pos + 1 : pos + T + 1]
    logits, state = model(x, state)
    loss = F.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    state = tuple(s.detach() for s in state)
    pos, steps = pos + T, steps + 1
trained_s = time.monotonic() - t0
model.eval()
total, state = 0.0, None
with torch.no_grad():
    for i in range(0, len(held) - 1, 256):
        x, y = held[i : i + 256], held[i + 1 : i + 257]
        logits, state = model(x[: len(y)].unsqueeze(1), state)
        total += F.cross_entropy(logits.reshape(-1, len(chars)), y, reduction="sum").item()
print(json.dumps({"loss": total / (len(held) - 1), "steps": steps, "tokens": steps * B * T, "train_s": trained_s,
                  "threads": torch.get_num_threads(), "vocab": len(chars), "held_out_tokens": len(held) - 1}))
