"""`gatedrnn train --data FILE --minutes M` with its defaults against the script a user would write.

    python benchmarks/first_hour.py --minutes 2                       # every text, baseline and gatedrnn
    python benchmarks/first_hour.py --minutes 2 --texts python-docs --variant threads2="--threads 2"
    python benchmarks/first_hour.py --minutes 2 --variant passive="--threads 2" --env passive=OMP_WAIT_POLICY=PASSIVE
    python benchmarks/first_hour.py --minutes 2 --competitor     # one other CPU-bound process running
    python benchmarks/first_hour.py --steps 1900 --baseline-steps 500 --variant d1="--dropout 0.1"

``--steps``/``--baseline-steps`` run a fixed number of steps on one thread each instead of the
clock (the step counts a budget gives on an idle machine), so that a comparison of settings does
not depend on the machine's load and two such runs may share it.

The baseline is `baseline_char_lstm.py` (embedding 128, one torch.nn.LSTM of 512, T=128, B=32,
Adam 2e-3, clip 1, stateful TBPTT, default threads). Both get the first nine tenths of the text
for the same wall-clock budget and are scored on the last tenth as one stream with the state
carried (`gatedrnn eval --data tail.txt`), in nats per character: the baseline trains on all of
its nine tenths; `gatedrnn train --data nine-tenths.txt` keeps its own validation and test splits
out of them (a twentieth of what it is given, in stripes), as a user's run on their own text does, so the
scored tenth is seen by neither. The texts are made from files every installation has, no
download (``rust-book`` only where a Rust toolchain installed its documentation): their size and
SHA-256 are printed beside the results. Variants run one after another, never side by side, in rounds (variant order rotated
each round); the load average (`os.getloadavg()`, the machine's `uptime`) before and after each
run is recorded: on a shared machine it says how much the figures can be trusted. With
``--competitor``, one other CPU-bound process (a single-threaded Python busy loop) runs beside
every run, training and scoring, started just before it and stopped after it.
"""
from __future__ import annotations

import argparse
import ast
import glob
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CAP = 5_000_000  # characters: texts are cut to this size (0.5-5 MB is what the defaults are for)


# -- texts every installation has --------------------------------------------------------------
def python_docs() -> str:
    """Python's own documentation as pydoc serves it (the language reference's topics), and
    IDLE's news and history files."""
    from pydoc_data.topics import topics

    parts = [topics[k] for k in sorted(topics)]
    idle = Path(sysconfig.get_paths()["stdlib"]) / "idlelib"
    parts += [p.read_text(encoding="utf-8") for p in sorted(idle.glob("*.txt"))]
    return "\n\n".join(parts)


def licences() -> str:
    """Every distinct licence text shipped with the installed packages, the Python standard
    library and (where present) the operating system's common licences."""
    roots = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["stdlib"]]
    paths = [p for r in roots for p in glob.glob(f"{r}/**/*LICEN[CS]E*", recursive=True)]
    paths += glob.glob("/usr/share/common-licenses/*")
    seen, parts = set(), []
    for p in sorted(paths):
        if not os.path.isfile(p):
            continue
        try:
            text = Path(p).read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text not in seen and len(text) > 200:
            seen.add(text)
            parts.append(text)
    return "\n\n".join(parts)


def docstrings(package: str) -> str:
    """The docstrings (over 80 characters) of an installed package's Python files, its tests left
    out: English prose, parameter lists, formulas and examples."""
    import importlib

    parts = []
    for path in sorted(Path(importlib.import_module(package).__file__).parent.rglob("*.py")):
        if "tests" in path.parts:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    parts.append(doc)
    return "\n\n".join(parts)


def numpy_docstrings() -> str:
    """NumPy's docstrings (NumPy is a dependency of gatedrnn): about 1.6 MB."""
    return docstrings("numpy")


def torch_docstrings() -> str:
    """PyTorch's docstrings (a dependency of gatedrnn): about 5.4 MB, cut to the cap, 5 MB."""
    return docstrings("torch")


RUST_BOOK = Path.home() / ".rustup/toolchains"


def rust_book() -> str:
    """"The Rust Programming Language" as rustup installs it (HTML, the tags taken out): a book of
    English prose and code examples. Only on machines with a Rust toolchain's documentation."""
    import html

    pages = sorted(RUST_BOOK.glob("*/share/doc/rust/html/book/print.html"))
    if not pages:
        raise SystemExit(f"rust-book: no {RUST_BOOK}/*/share/doc/rust/html/book/print.html on this machine")
    page = pages[-1].read_text(encoding="utf-8")
    main = re.search(r"<main>(.*)</main>", page, re.S)
    body = re.sub(r"<script.*?</script>|<style.*?</style>", "", main.group(1) if main else page, flags=re.S)
    return re.sub(r"\n{3,}", "\n\n", html.unescape(re.sub(r"<[^>]+>", "", body)))


TEXTS = {"python-docs": python_docs, "licences": licences, "numpy-docstrings": numpy_docstrings,
         "rust-book": rust_book, "torch-docstrings": torch_docstrings}


def write_text(name: str, folder: Path) -> tuple[Path, Path, dict]:
    """The whole text (the baseline's), its first nine tenths (gatedrnn's) and its last tenth (the
    scored one), as files; with its size and digest."""
    text = TEXTS[name]()[:CAP]
    text = text.replace("\r\n", "\n")
    whole, tail = folder / f"{name}.txt", folder / f"{name}.tail.txt"
    whole.write_text(text, encoding="utf-8")
    cut = int(round(len(text) * 0.9))  # the baseline script's cut: the same held-out tenth
    (folder / f"{name}.train.txt").write_text(text[:cut], encoding="utf-8")
    tail.write_text(text[cut:], encoding="utf-8")
    info = {"chars": len(text), "mb": round(len(text.encode()) / 1e6, 2),
            "sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "held_out_chars": len(text) - cut}
    return whole, tail, info


# -- runs ---------------------------------------------------------------------------------------
def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def run_baseline(whole: Path, tail: Path, budget: list[str], out: Path, env: dict) -> dict:
    cmd = [sys.executable, str(HERE / "baseline_char_lstm.py"), str(whole), *budget]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"loss": result["loss"], "steps": result["steps"], "cmd": shlex.join(cmd[1:])}


def run_gatedrnn(whole: Path, tail: Path, budget: list[str], out: Path, env: dict, extra: list[str]) -> dict:
    train = whole.with_name(whole.name.replace(".txt", ".train.txt"))
    cmd = [sys.executable, "-m", "gatedrnn", "train", "--data", str(train), *budget,
           "--out", str(out), "--sample-length", "0", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{done.stderr[-2000:]}")
    steps = int(re.search(r"done: (\d+) steps", done.stdout).group(1))
    ev = subprocess.run([sys.executable, "-m", "gatedrnn", "eval", str(out), "--data", str(tail), "--json"],
                        capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    result = json.loads(ev.stdout.strip().splitlines()[-1])
    # the thread counts the run chose, in order, and the dropout rate it set (where it did)
    threads = [int(n) for n in re.findall(r"^threads: (\d+)", done.stdout, re.M)]
    dropout = re.search(r"^dropout: ([0-9.]+)", done.stdout, re.M)
    return {"loss": result["loss"], "steps": steps, "threads": threads,
            "dropout": float(dropout.group(1)) if dropout else None, "cmd": "gatedrnn " + shlex.join(cmd[3:])}


class Competitor:
    """One other CPU-bound process for the length of a ``with`` block (or nothing, when off)."""

    def __init__(self, on: bool):
        self.on, self.proc = on, None

    def __enter__(self):
        if self.on:
            self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=0, help="gatedrnn: this many steps on one thread, not the clock")
    p.add_argument("--baseline-steps", type=int, default=0, help="the baseline: this many steps on one thread")
    here = [n for n in TEXTS if n != "rust-book" or any(RUST_BOOK.glob("*/share/doc/rust/html/book/print.html"))]
    p.add_argument("--texts", default=",".join(here), help=f"of {', '.join(TEXTS)} (default: those on this machine)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--no-default", action="store_true", help="leave out gatedrnn with its defaults")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help="gatedrnn train with these flags as well (repeatable)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VAR=VALUE",
                   help="an environment variable for one variant (repeatable)")
    p.add_argument("--competitor", action="store_true",
                   help="run one other CPU-bound process beside every run (the shared-machine case)")
    p.add_argument("--out", default="first-hour", help="folder for texts, runs and results.jsonl")
    args = p.parse_args()

    if bool(args.steps) != bool(args.baseline_steps) or args.steps < 0 or args.baseline_steps < 0:
        p.error(f"--steps and --baseline-steps go together, both positive; got {args.steps} and {args.baseline_steps}")
    if args.steps:
        budgets = {"baseline": ["--steps", str(args.baseline_steps)], "gatedrnn": ["--steps", str(args.steps),
                                                                                   "--threads", "1"]}
        label = f"fixed steps: gatedrnn {args.steps}, baseline {args.baseline_steps}, one thread each"
    else:
        budgets = {"baseline": ["--minutes", str(args.minutes)], "gatedrnn": ["--minutes", str(args.minutes)]}
        label = f"budget {args.minutes:g} min"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = {} if args.no_baseline else {"baseline": None}
    if not args.no_default:
        variants["gatedrnn"] = []
    for v in args.variant:
        name, _, flags = v.partition("=")
        variants[name] = shlex.split(flags)
    envs = {name: {} for name in variants}
    for e in args.env:
        name, _, assignment = e.partition("=")
        key, _, value = assignment.partition("=")
        envs[name][key] = value
    base_env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **({"OMP_NUM_THREADS": "1"} if args.steps else {})}
    machine = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine}; {os.cpu_count()} CPUs; "
          + label + ("; one competing CPU-bound process" if args.competitor else ""),
          flush=True)
    print("| text | variant | held-out nats/char | steps | load before | load after |", flush=True)
    print("|---|---|---:|---:|---|---|", flush=True)
    names = list(variants)
    for text in args.texts.split(","):
        whole, tail, info = write_text(text, out)
        print(f"| {text} ({info['mb']} MB, sha256 {info['sha256']}) | | | | | |", flush=True)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                env = {**base_env, **envs[name]}
                before = load()
                run_dir = out / "runs" / f"{text}-{name}-{r}-{int(time.time())}"
                with Competitor(args.competitor):
                    if variants[name] is None:
                        result = run_baseline(whole, tail, budgets["baseline"], run_dir, env)
                    else:
                        result = run_gatedrnn(whole, tail, budgets["gatedrnn"], run_dir, env, variants[name])
                row = {"text": text, **info, "variant": name, "round": r,
                       "minutes": None if args.steps else args.minutes,
                       "competitor": args.competitor,
                       "env": envs[name], "load_before": before, "load_after": load(),
                       "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), **result}
                with open(out / "results.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"| {text} | {name} | {row['loss']:.4f} | {row['steps']} | {before} | {row['load_after']} |",
                      flush=True)


if __name__ == "__main__":
    main()
