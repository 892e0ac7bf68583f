"""``ThreadChooser``: the thread count of a run chosen by timing its own steps (a simulated clock)."""
import pytest

from gatedrnn.training.loop import Event
from gatedrnn.training.threads import ThreadChooser, available_cores


class Machine:
    """Steps whose duration depends on the thread count set, on a clock the test controls."""

    def __init__(self, cost):
        self.cost, self.now, self.threads, self.switches = dict(cost), 0.0, None, []

    def set_threads(self, n):
        self.threads = n
        self.switches.append(n)

    def clock(self):
        return self.now


def train(chooser, machine, steps, start=0, extra=None):
    """``steps`` steps; ``extra(step)`` may send other events (validations) in between."""
    seconds_at = {}
    for step in range(start, start + steps):
        machine.now += machine.cost[machine.threads]
        seconds_at[machine.threads] = seconds_at.get(machine.threads, 0) + machine.cost[machine.threads]
        chooser(Event("step", step + 1, {"loss": 1.0}))
        if extra:
            extra(step + 1)
    return seconds_at


def make(cost, events=None, **kw):
    machine = Machine(cost)
    sink = events if events is not None else []
    chooser = ThreadChooser(sink.append, candidates=tuple(cost), set_threads=machine.set_threads, clock=machine.clock,
                            **kw)
    return chooser, machine, sink


def test_an_idle_machine_gets_the_faster_count():
    chooser, machine, events = make({1: 0.30, 2: 0.17}, window=5)
    train(chooser, machine, 40)
    assert machine.threads == 2 and chooser.chosen == 2
    chosen = [e for e in events if e.kind == "threads"]
    assert len(chosen) == 1 and chosen[0].data["threads"] == 2
    assert chosen[0].data["seconds_per_step"] == pytest.approx({1: 0.30, 2: 0.17})
    assert sum(e.kind == "step" for e in events) == 40  # the trainer's own events all pass through


def test_busy_cores_keep_one_thread_and_a_slow_count_is_dropped_early():
    chooser, machine, _ = make({1: 0.3, 2: 6.0}, window=5)
    seconds = train(chooser, machine, 60)
    assert machine.threads == 1 and chooser.chosen == 1
    # the slow count was timed only until it had cost twice the fast one's whole window
    assert seconds[2] <= 2 * 5 * 0.3 + 6.0 + 6.0


def test_the_choice_follows_the_load_at_the_next_probe():
    chooser, machine, events = make({1: 0.3, 2: 0.17}, window=4, every_s=30.0)
    train(chooser, machine, 30)
    assert machine.threads == 2
    machine.cost[2] = 3.0  # another job takes a core
    train(chooser, machine, 80, start=30)
    assert machine.threads == 1
    assert [e.data["threads"] for e in events if e.kind == "threads"] == [2, 1]
    machine.cost[2] = 0.17  # and leaves
    train(chooser, machine, 400, start=110)
    assert [e.data["threads"] for e in events if e.kind == "threads"] == [2, 1, 2]


def test_steps_slowing_down_by_half_probe_at_once():
    chooser, machine, events = make({1: 0.3, 2: 0.17}, window=4, every_s=1e9)  # no probe by the clock
    train(chooser, machine, 30)
    assert machine.threads == 2
    machine.cost[2] = 3.0  # another job takes a core: 2 threads wait on it
    seconds = train(chooser, machine, 20, start=30)
    assert machine.threads == 1 and [e.data["threads"] for e in events if e.kind == "threads"] == [2, 1]
    # noticed after one window of slow steps, and the probe drops the slow count early
    assert seconds[2] <= 4 * 3.0 + 2 * 4 * 0.3 + 2 * 3.0
    machine.cost[1] = 0.4  # a slowdown under half keeps the choice: no probe
    before = len(machine.switches)
    train(chooser, machine, 50, start=50)
    assert machine.threads == 1 and len(machine.switches) == before


def test_a_step_beside_a_validation_is_not_timed():
    def validate(step):
        if step % 2 == 0:  # a validation after every other step: it must not count as step time
            machine.now += 100.0
            chooser(Event("valid", step, {"loss": 1.0}))

    chooser, machine, _ = make({1: 0.3, 2: 0.17}, window=3)
    train(chooser, machine, 60, extra=validate)
    assert chooser.chosen == 2 and max(max(v) for v in chooser.times.values() if v) < 1.0


def test_defaults_and_bad_arguments():
    assert ThreadChooser(set_threads=lambda n: None).candidates == sorted({1, available_cores()})
    assert available_cores() >= 1
    with pytest.raises(ValueError, match="positive"):
        ThreadChooser(candidates=(0, 2), set_threads=lambda n: None)
    with pytest.raises(ValueError, match="window"):
        ThreadChooser(window=0, set_threads=lambda n: None)
    with pytest.raises(ValueError, match="slower"):
        ThreadChooser(slower=1.0, set_threads=lambda n: None)
