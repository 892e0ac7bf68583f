"""``gatedrnn compare``: train cells side by side on a task over seeds; table, CSV and curves."""
from __future__ import annotations

import argparse
import ast
import math

from ..cells import CELLS
from ..data.tasks import TASKS, make_task

def parse_cells(text: str) -> tuple[str, ...]:
    cells = tuple(c.strip() for c in text.split(",") if c.strip())
    if not cells:
        raise ValueError(f"--cells needs at least one of {', '.join(CELLS)}, got {text!r}")
    return cells


def parse_seeds(text: str) -> tuple[int, ...]:
    """``3`` means seeds 0, 1, 2; ``0,5,9`` lists them."""
    try:
        if "," in text:
            return tuple(int(s) for s in text.split(",") if s.strip())
        n = int(text)
    except ValueError:
        raise ValueError(f"--seeds takes a count or a comma-separated list of integers, got {text!r}") from None
    if n <= 0:
        raise ValueError(f"--seeds must be positive, got {n}")
    return tuple(range(n))


def parse_key_values(items) -> dict:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def add_arguments(p):
    from .flags import add_cell_option_flags, add_threads_flag

    # every default is None (not given): what no flag and no recipe gives comes from CompareConfig
    # (a long-range task) or LMCompareConfig (--task lm), whose defaults the help names
    p.add_argument("--recipe", metavar="NAME", help="a named set of settings (gatedrnn/recipes/NAME.toml, e.g. "
                   "mogrifier-char): --task lm with its model, training, cells and seeds; flags given override it, "
                   "whatever their value")
    from ..experiments.compare import CompareConfig
    from ..experiments.compare_lm import LMCompareConfig

    task, lm = CompareConfig(), LMCompareConfig()

    def default(name, show=str):  # "64", or "0.01; lm: 0.003" where the two configs differ
        a, b = show(getattr(task, name)), show(getattr(lm, name))
        return f"default {a}" if a == b else f"default {a}; lm: {b}"

    p.add_argument("--cells", type=parse_cells, help=f"comma-separated cells among {', '.join(CELLS)} "
                   f"({default('cells', ','.join)})")
    p.add_argument("--task", help=f"one of {', '.join(TASKS)}, or lm (default {task.task})")
    p.add_argument("--seq-len", type=int, help=f"sequence length or lag (default: the task's; lm: BPTT window "
                   f"{lm.seq_len})")
    p.add_argument("--task-option", action="append", metavar="KEY=VALUE", help="task option, e.g. symbols=4")
    p.add_argument("--steps", type=int, help=f"training steps per run ({default('steps')})")
    p.add_argument("--minutes", type=float,
                   help="wall-clock budget of each run (cell and seed), evaluations included; a run ends at its "
                        "steps or its minutes, whichever comes first (default: no limit)")
    add_threads_flag(p)
    p.add_argument("--seeds", type=parse_seeds, help=f"count (3 = seeds 0,1,2) or list ({default('seeds', len)})")
    p.add_argument("--hidden-size", type=int, help=f"hidden size of the first cell ({default('hidden_size')})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate ({default('lr', '{:g}'.format)})")
    p.add_argument("--batch-size", type=int, help=f"{default('batch_size')}")
    p.add_argument("--clip", type=float, help=f"gradient norm clip, 0 for none ({default('clip', '{:g}'.format)})")
    p.add_argument("--eval-every", type=int, help=f"steps between evaluations ({default('eval_every')})")
    p.add_argument("--stop-when-solved", action=argparse.BooleanOptionalAction, default=None,
                   help="end a run at the first evaluation that solves the task (default off)")
    p.add_argument("--match-params", action=argparse.BooleanOptionalAction, default=None,
                   help="size each cell to the parameter count of the reference cell, within 1%% where a size "
                        "gets there (lm: the embedding size too); the counts are printed (default off)")
    p.add_argument("--reference", help="the cell others are matched to (default: the first of --cells)")
    p.add_argument("--data", help="--task lm: text file or corpus folder (default: the built-in corpus)")
    p.add_argument("--level", choices=("char", "word", "byte"), help="--task lm: token level")
    p.add_argument("--out", default="compare-out", help="directory for results.csv, results.md, curves.png "
                   "(default compare-out)")
    add_cell_option_flags(p)


def cell_options(args) -> dict:
    from .flags import cell_options as given

    return given(args)


#: recipe settings the LM comparison takes beyond its own flags: LMConfig's and TrainConfig's
RECIPE_MODEL = ("num_layers", "sum_layer_outputs", "tie_weights", "embed_size", "dropout", "embedding_dropout", "engine")
RECIPE_TRAIN = ("optimizer", "beta1", "beta2", "weight_decay", "momentum", "schedule", "warmup", "eval_streams")
#: the flags a recipe's settings fill (a flag given wins); the rest are RECIPE_MODEL and RECIPE_TRAIN
RECIPE_FLAGS = ("cells", "seeds", "match_params", "reference", "eval_every", "steps", "minutes", "hidden_size",
                "seq_len", "batch_size", "lr", "clip", "data", "level")


def apply_recipe(args) -> tuple[dict, dict]:
    """Fill from ``--recipe`` what the user did not give (a flag given wins, whatever its value);
    returns the recipe's further model and training settings."""
    if not getattr(args, "recipe", None):
        return {}, {}
    from . import UsageError
    from ..training.recipes import check_keys, load_recipe
    from .flags import CELL_OPTIONS

    recipe = load_recipe(args.recipe)
    check_keys(recipe, set(RECIPE_MODEL) | set(RECIPE_TRAIN) | set(CELL_OPTIONS) | set(RECIPE_FLAGS)
               | {"cell", "seed", "device"})
    if args.task not in (None, "lm"):
        raise UsageError(f"--recipe {args.recipe} compares language models (--task lm), got --task {args.task}")
    args.task = "lm"
    given = {**recipe.settings, **recipe.compare}
    given.pop("cell", None)
    if "cells" in given:
        given["cells"] = parse_cells(given["cells"])
    if "seeds" in given:
        given["seeds"] = parse_seeds(str(given["seeds"]))
    for key, value in given.items():
        if (key in RECIPE_FLAGS or key in CELL_OPTIONS) and getattr(args, key, None) is None:
            setattr(args, key, value)
    model = {k: v for k, v in recipe.settings.items() if k in RECIPE_MODEL}
    train = {k: v for k, v in recipe.settings.items() if k in RECIPE_TRAIN}
    return model, train


def resolve(args, defaults) -> None:
    """What no flag and no recipe gave: the defaults of the comparison's config dataclass."""
    for key in ("cells", "seeds", "steps", "hidden_size", "lr", "batch_size", "clip", "eval_every", "seq_len",
                "stop_when_solved"):
        if getattr(args, key, None) is None and hasattr(defaults, key):
            setattr(args, key, getattr(defaults, key))
    args.match_params = bool(args.match_params)


def describe_matches(matches: dict, reference: str, hidden_size: int) -> list[str]:
    """The matched sizes and counts, one line per cell; a count not within 1% says how far it is."""
    lines = [f"parameters matched to {reference} at hidden size {hidden_size}:"]
    for m in matches.values():
        embed = f"  embed {m.embed_size:>5}" if m.embed_size else ""
        flag = ("" if abs(m.deviation) <= 0.01 else
                f"  (not within 1%: the closest found is {abs(m.deviation):.1%} "
                f"{'above' if m.deviation > 0 else 'below'} {reference}'s {m.reference_params:,})")
        lines.append(f"  {m.cell:<10} hidden {m.hidden_size:>5}{embed}  params {m.params:>9,}  ({m.deviation:+.2%}){flag}")
    return lines


def run(args) -> int:
    from . import UsageError

    from ..experiments.compare import (CompareConfig, compare, match_parameters, parameter_count,
                                    write_results)

    recipe_model, recipe_train = apply_recipe(args)
    args.task = args.task or "adding"
    if args.task == "lm":
        from ..experiments.compare_lm import LMCompareConfig

        resolve(args, LMCompareConfig())
    else:
        resolve(args, CompareConfig())
    from .flags import use_threads

    use_threads(args)
    if args.minutes is not None and not args.minutes > 0:
        raise UsageError(f"--minutes must be positive, got {args.minutes:g}")
    minutes = args.minutes or 0.0
    if args.task != "lm" and (args.data is not None or args.level is not None):
        raise UsageError(f"--data and --level are for --task lm, got --task {args.task}")
    if args.reference is not None and not args.match_params:
        raise UsageError("--reference needs --match-params")
    if args.task == "lm":
        from ..experiments.compare_lm import (LMCompareConfig, compare_lm, lm_parameter_count, load,
                                              match_lm_parameters)

        config = LMCompareConfig(cells=args.cells, data=args.data or "", level=args.level or "",
                                 seq_len=args.seq_len, steps=args.steps, seeds=args.seeds,
                                 hidden_size=args.hidden_size, lr=args.lr,
                                 batch_size=args.batch_size, clip=args.clip,
                                 eval_every=args.eval_every, minutes=minutes,
                                 cell_options=cell_options(args), model_options=recipe_model, train_options=recipe_train)
        CompareConfig(cells=config.cells, steps=config.steps, hidden_size=config.hidden_size,
                      batch_size=config.batch_size, eval_every=config.eval_every, lr=config.lr).validate()
        corpus = load(config)
        print(f"lm on {corpus.summary()}")
        V = len(corpus.vocab)
        tied = bool(recipe_model.get("tie_weights"))
        count_lm = lambda c, h, e: lm_parameter_count(c, V, h, config.cell_options,  # noqa: E731
                                                      num_layers=recipe_model.get("num_layers", 1),
                                                      tie_weights=tied, embed_size=e)
        match = lambda cells, ref, hidden: match_lm_parameters(  # noqa: E731
            cells, ref, hidden, count_lm, embed_size=recipe_model.get("embed_size", 0), tie_weights=tied)
        headline = (f"lm: {len(config.cells)} cell(s) x {len(config.seeds)} seed(s), {config.steps} steps"
                    f"{f' or {minutes:g} minutes' if minutes else ''} per run, "
                    f"BPTT {config.seq_len}; held-out bits per token, chance log2({V}) = {math.log2(V):.3g}")
        launch = lambda report: compare_lm(config, args.out, corpus, on_run=report)  # noqa: E731
    else:
        config = CompareConfig(cells=args.cells, task=args.task, seq_len=args.seq_len,
                               task_options=parse_key_values(args.task_option), steps=args.steps,
                               seeds=args.seeds, hidden_size=args.hidden_size, lr=args.lr,
                               batch_size=args.batch_size, clip=args.clip,
                               eval_every=args.eval_every,
                               stop_when_solved=args.stop_when_solved, minutes=minutes,
                               cell_options=cell_options(args))
        config.validate()
        task = make_task(config.task, config.seq_len, **config.task_options)
        count = lambda c, h: parameter_count(c, task, h, config.cell_options)  # noqa: E731
        match = lambda cells, ref, hidden: match_parameters(cells, ref, hidden, count)  # noqa: E731
        headline = (f"{task.describe()}: {len(config.cells)} cell(s) x {len(config.seeds)} seed(s), {config.steps} "
                    f"steps; {task.metric_name} chance {task.chance:.3g}, solved at {task.solved_at:.3g}")
        launch = lambda report: compare(config, on_run=report)  # noqa: E731
    notes = ""
    if args.match_params:
        reference = args.reference or config.cells[0]
        if reference not in config.cells:
            raise UsageError(f"--reference must be one of --cells ({', '.join(config.cells)}), got {reference!r}")
        matches = match(config.cells, reference, config.hidden_size)
        config.hidden_sizes = {c: m.hidden_size for c, m in matches.items()}
        if args.task == "lm":
            config.embed_sizes = {c: m.embed_size for c, m in matches.items() if m.embed_size}
        lines = describe_matches(matches, reference, config.hidden_size)
        print("\n".join(lines))
        notes = "\n".join(lines) + "\n"
    print(headline)

    def report(r):
        solved = (f"solved at step {r.steps_to_solve}" if r.steps_to_solve is not None
                  else "not solved" if math.isfinite(r.solved_at) else "")
        print(f"{r.cell:<10} seed {r.seed:<3} {r.metric_name} {r.final_metric:.4g}  {solved}  "
              f"{r.params} params  {r.seconds:.1f} s  {r.tokens_per_s:.0f} tokens/s", flush=True)

    runs = launch(report)
    if args.task == "lm":
        from ..experiments.compare_lm import convergence_table

        table = convergence_table(runs)
        print(table)
        notes = table + "\n" + notes
    paths = write_results(runs, args.out, preamble=notes)
    print(f"wrote {paths['csv']}, {paths['md']}, {paths['png']}")
    return 0
