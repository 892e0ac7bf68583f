"""The Mogrifier's training step against its floor, timed interleaved round by round: the loop
with its saved buffers on huge pages (``hp``) and without (``nohp``, ``buffers.ENABLED = False``),
the products alone (``products``, as ``gatedrnn bench``), and ``floor``: the products plus the
first writes of the buffers the loop saves for its backward (allocated as the loop allocates
them, written once), what no loop saving them can avoid. Ratios are medians of per-round ratios.

    python benchmarks/mogrifier_floor.py THREADS H REPEATS cpu|wall

``cpu`` times the process's CPU time (``time.process_time``), far less disturbed on a shared
machine than ``wall`` (``perf_counter``); at one thread only. Default Mogrifier: 5 rounds.
"""
import sys, statistics, time, torch
from gatedrnn.experiments import bench, floor
from gatedrnn.torch_engine import buffers
from gatedrnn.torch_engine.loops.mogrifier import x_rounds_kept
threads, H, repeats, clock = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
cfg = bench.BenchConfig()
torch.manual_seed(0)
m = bench.make_module("fused", "mogrifier", H, cfg)
x, gy = bench._inputs(cfg, H)
T, B, I = x.shape
nq, nr = 3, 2
prod = floor.products_only(m, x.detach(), True)
def floor():
    prod()
    for t in buffers.carve(x, [(T + 1, B, H), (T, B, 4 * H), (x_rounds_kept(nq, nr), T, B, I), (nq, T, B, I), (nr, T, B, H),
                               (nr, T, B, H), (T, B, I + H)]):
        t.fill_(0.5)
def run(hp):
    def fn():
        buffers.ENABLED = hp
        m(x)[0].backward(gy)
    return fn
fns = {"hp": run(True), "nohp": run(False), "products": prod, "floor": floor}
times = bench.interleaved(fns, repeats, clock=time.process_time if clock == "cpu" else time.perf_counter)
ratio = lambda a, b: statistics.median(u / v for u, v in zip(times[a], times[b]))
print(f"H={H} t{threads} {clock} hp/products={ratio('hp','products'):.3f} nohp/products={ratio('nohp','products'):.3f} "
      f"hp/nohp={ratio('hp','nohp'):.3f} floor/products={ratio('floor','products'):.3f} hp/floor={ratio('hp','floor'):.3f} "
      f"products_ms={1e3*statistics.median(times['products']):.0f}", flush=True)
