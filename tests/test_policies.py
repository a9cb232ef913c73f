"""Checkpoint policies (pure, no MPI): the interval formulas, the configuration errors, and the
schedule driven by simulated workers whose clocks differ (an injected clock per worker)."""

from __future__ import annotations

import math

import pytest

from mpickpt.errors import ConfigError
from mpickpt.policies import (
    ENV_MTBF,
    GROW,
    Auto,
    Every,
    EverySeconds,
    Policy,
    daly_interval,
    expected_overhead,
    format_duration,
    parse_duration,
)
from mpickpt.schedule import Interval, Schedule, make_schedule

# -- the formulas -----------------------------------------------------------------------------


def minimise(f, lo: float, hi: float, n: int = 200_000) -> float:
    """The argmin of ``f`` over a geometric grid of ``n`` points in [lo, hi]."""
    ratio = (hi / lo) ** (1 / (n - 1))
    return min((lo * ratio**i for i in range(n)), key=f)


@pytest.mark.parametrize("cost,mtbf", [(0.05, 3600), (0.4, 3600), (30, 3600), (1, 60)])
def test_first_order_overhead_is_smallest_at_young(cost, mtbf):
    best = minimise(lambda t: expected_overhead(t, cost, mtbf), cost / 100, 10 * mtbf)
    assert best == pytest.approx(math.sqrt(2 * cost * mtbf), rel=1e-3)


@pytest.mark.parametrize("ratio", [1e-5, 1e-3, 1e-2, 0.1, 0.5, 1.0])
def test_daly_is_near_the_optimum_of_the_exponential_model(ratio):
    """Daly's exact model with exponential failures: the wall time per unit of work is
    proportional to (exp((tau + C) / M) - 1) / tau; his higher-order estimate must land near
    its minimum (within 1 % of the lowest expected time), for small and large C/M."""
    mtbf = 3600.0
    cost = ratio * mtbf

    def wall(t: float) -> float:
        return math.expm1((t + cost) / mtbf) / t

    best = minimise(wall, cost / 1000 + 1e-6, 10 * mtbf)
    tau = daly_interval(cost, mtbf)
    assert wall(tau) <= 1.01 * wall(best)
    # Young's sqrt(2 C M) - C is good only when C << M
    young = math.sqrt(2 * cost * mtbf) - cost
    if ratio <= 1e-3:
        assert tau == pytest.approx(young, rel=0.05)


def test_daly_for_a_checkpoint_longer_than_twice_the_mtbf_is_the_mtbf():
    assert daly_interval(100.0, 40.0) == 40.0
    assert daly_interval(80.0, 40.0) == 40.0


def test_expected_overhead_formula():
    c, m = 0.4, 3600.0
    tau = math.sqrt(2 * c * m)
    # at Young's tau both terms are about equal: sqrt(2C/M) in all
    assert expected_overhead(tau, c, m) == pytest.approx(math.sqrt(2 * c / m) + c / (2 * m))
    assert expected_overhead(tau / 2, c, m) > expected_overhead(tau, c, m)
    assert expected_overhead(2 * tau, c, m) > expected_overhead(tau, c, m)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,seconds",
    [("90", 90), (90, 90), (1.5, 1.5), ("10min", 600), ("10 m", 600), ("1.5h", 5400)]
    + [("2d", 172800), ("1e3s", 1000), (" 7H ", 25200)],
)
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("bad", [0, -1, "0s", "-5", "abc", "5 parsecs", True, None, math.inf])
def test_bad_durations_name_the_parameter(bad):
    with pytest.raises(ConfigError, match="^mtbf must be a positive duration"):
        parse_duration(bad, "mtbf")


def test_format_duration():
    assert format_duration(0.0123) == "12.3 ms"
    assert format_duration(52.3) == "52.3 s"
    assert format_duration(600) == "10 min"
    assert format_duration(3 * 3600) == "3 h"


@pytest.mark.parametrize("every", [0, -3, "0", "-1", 2.5, True, "often", [10]])
def test_bad_every_is_a_config_error_naming_every(every):
    with pytest.raises(ConfigError, match="^every must be a positive number of steps"):
        make_schedule(every)


def test_auto_without_mtbf_names_mtbf_and_the_environment_variable():
    with pytest.raises(ConfigError, match=f"every='auto' needs .* mtbf=.* {ENV_MTBF}"):
        make_schedule("auto")


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"every_seconds": 0}, "every_seconds"),
        ({"every_seconds": "-2min"}, "every_seconds"),
        ({"every": "auto", "mtbf": -1}, "mtbf"),
        ({"every": 10, "mtbf": "0h"}, "mtbf"),
    ],
)
def test_bad_durations_are_config_errors_naming_the_parameter(kwargs, name):
    with pytest.raises(ConfigError, match=f"^{name} must be a positive duration"):
        make_schedule(**kwargs)


def test_every_and_every_seconds_together_is_an_error():
    with pytest.raises(ConfigError, match="either every .* or every_seconds"):
        make_schedule(5, every_seconds=60)


def test_what_make_schedule_builds():
    assert isinstance(make_schedule().policy, Every) and make_schedule().policy.n == 10
    assert make_schedule(7).policy.n == 7 and make_schedule("12").policy.n == 12
    s = make_schedule(every_seconds="10min")
    assert isinstance(s.policy, EverySeconds) and s.policy.seconds == 600
    assert s.mtbf is None
    s = make_schedule("auto", mtbf="1h")
    assert isinstance(s.policy, Auto) and s.policy.mtbf == 3600 and s.mtbf == 3600
    s = make_schedule(20, mtbf="2h")  # an MTBF without auto: for the report
    assert s.policy.n == 20 and s.mtbf == 7200
    mine = EverySeconds.minutes(5)
    assert make_schedule(mine).policy is mine and mine.seconds == 300


# -- the schedule, driven by simulated workers ------------------------------------------------


class Clock:
    """A worker's clock, advanced by the simulation."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Job:
    """Workers that each run a :class:`Schedule` on their own clock, the way ``ctx.steps``
    drives it: steps take ``step_time(worker, step)`` seconds on each worker (their clocks
    drift apart), a checkpoint ends on every worker at the same moment (its agreement), ``cost``
    seconds after the last worker arrived, and carries the element-wise maximum of their
    contributions (``reduce=False``: each worker uses only its own values)."""

    def __init__(self, policy_factory, workers: int, step_time, cost, reduce=True, **kw):
        self.clocks = [Clock() for _ in range(workers)]
        self.schedules = [Schedule(policy_factory(), clock=c, **kw) for c in self.clocks]
        self.step_time = step_time
        self.cost = cost  # seconds, or a function of the checkpoint's step
        self.reduce = reduce
        self.intervals: list[Interval] = []
        self.checkpoint_steps: list[int] = []
        self.disagreements = 0

    def checkpoint(self, step: int, stop: set[int] = frozenset()) -> None:
        arrived = max(c.t for c in self.clocks)
        for s in self.schedules:
            s.begin(step)
        mine = [s.contribution(w in stop) for w, s in enumerate(self.schedules)]
        reduced = [max(col) for col in zip(*mine, strict=True)]
        cost = self.cost(step) if callable(self.cost) else self.cost
        for c in self.clocks:
            c.t = arrived + cost
        intervals = [s.end(step, reduced if self.reduce else None) for s in self.schedules]
        self.disagreements += len({p.at for p in intervals}) > 1
        if self.reduce:
            assert all(p == intervals[0] for p in intervals), intervals
        self.intervals.append(intervals[0])
        self.checkpoint_steps.append(step)

    def run(self, start: int, n: int) -> Job:
        for s in self.schedules:
            s.resume()
        self.checkpoint(start)
        for step in range(start, n):
            for w, c in enumerate(self.clocks):
                c.t += self.step_time(w, step)
            due = {s.due(step) for s in self.schedules}
            if not self.reduce and len(due) > 1:
                self.disagreements += 1
                due = {True}
            assert len(due) == 1
            if due.pop() or step + 1 == n:
                self.checkpoint(step + 1)
        return self


def uneven(w: int, step: int) -> float:
    """Worker w's steps take 1 ms plus 0.1 ms per worker, with a wobble."""
    return 1e-3 * (1 + 0.1 * w) * (1 + 0.05 * math.sin(step * (w + 1)))


def test_every_checkpoints_at_multiples_also_after_a_resume():
    job = Job(lambda: Every(10), 3, uneven, 0.01).run(143, 200)
    assert job.checkpoint_steps == [143, 150, 160, 170, 180, 190, 200]


def test_auto_plans_the_same_step_on_every_worker_and_reaches_daly():
    mtbf, cost = 60.0, 0.02
    job = Job(lambda: Auto(mtbf), 4, uneven, cost).run(0, 20_000)
    steps = [p.steps for p in job.intervals]
    # a probe of one step, then growth capped at GROW-fold, then Daly's interval
    assert steps[0] == 1 and all(b <= GROW * a for a, b in zip(steps, steps[1:], strict=False))
    final = job.intervals[-2]  # the last one is planned after the last step
    slowest = max(sum(uneven(w, s) for s in range(1000)) / 1000 for w in range(4))
    assert final.est.checkpoint == pytest.approx(cost, rel=1e-9)  # the last arrival's view
    assert final.est.step == pytest.approx(slowest, rel=0.05)  # the slowest worker's pace
    expect = daly_interval(cost, mtbf) / final.est.step
    assert final.steps == pytest.approx(expect, abs=1)
    assert final.overhead == pytest.approx(
        expected_overhead(final.steps * final.est.step, final.est.checkpoint, mtbf)
    )
    assert "Auto(mtbf=60)" in final.describe() and "expected overhead" in final.describe()


def test_without_the_reduction_workers_with_different_clocks_disagree():
    """The property the reduction buys: on their own clocks, the workers plan different
    steps (a collective checkpoint would then hang)."""
    job = Job(lambda: EverySeconds(0.05), 4, uneven, 0.01, reduce=False).run(0, 3000)
    assert job.disagreements > 0
    job = Job(lambda: EverySeconds(0.05), 4, uneven, 0.01).run(0, 3000)
    assert job.disagreements == 0


def test_every_seconds_follows_a_change_of_pace():
    def pace(w: int, step: int) -> float:
        return 1e-3 if step < 2000 else 4e-3  # steps become 4 times slower

    job = Job(lambda: EverySeconds(0.1), 2, pace, 0.005, smoothing=1.0).run(0, 4000)
    before = [p for p in job.intervals if 500 < p.start < 2000]
    after = [p for p in job.intervals if p.start > 2500]
    assert before and all(p.steps == 100 for p in before)
    assert after and all(p.steps == 25 for p in after)
    # in seconds of computation the interval stays what was asked for
    gaps = [b - a for a, b in zip(job.checkpoint_steps, job.checkpoint_steps[1:], strict=False)]
    assert max(gaps) <= 100


def test_auto_follows_a_change_of_checkpoint_cost_smoothly():
    def cost(step: int) -> float:
        return 0.01 if step < 30_000 else 0.04  # e.g. the state grew

    job = Job(lambda: Auto(30.0), 2, lambda w, s: 1e-3, cost).run(0, 90_000)
    early = [p for p in job.intervals if 10_000 < p.start < 30_000]
    late = [p for p in job.intervals if p.start > 75_000]
    assert early and late
    assert early[-1].steps == pytest.approx(daly_interval(0.01, 30.0) / 1e-3, abs=1)
    # C 4x larger: the interval about 2x longer (sqrt), reached gradually (smoothed)
    assert late[-1].est.checkpoint == pytest.approx(0.04, rel=0.02)
    assert late[-1].steps == pytest.approx(daly_interval(0.04, 30.0) / 1e-3, rel=0.01)
    first_after = next(p for p in job.intervals if p.start > 30_000)
    assert first_after.est.checkpoint < 0.04  # one costly checkpoint does not swing it all


def test_a_promoted_spare_adopts_the_survivors_estimates():
    def pace(w: int, step: int) -> float:
        return 1e-3

    job = Job(lambda: Auto(60.0), 3, pace, 0.02).run(0, 5000)
    survivors = job.schedules[:2]
    spare_clock = Clock()
    spare_clock.t = job.clocks[0].t
    spare = Schedule(Auto(60.0), clock=spare_clock)  # has measured nothing
    job.schedules = [*survivors, spare]
    job.clocks = [*job.clocks[:2], spare_clock]
    before = survivors[0].est
    done = len(job.intervals)
    job.run(4990, 9000)  # resumed at the last committed step; plans checked equal inside
    first = job.intervals[done]
    assert first.start == 4990 and not first.probe  # no new probe: the estimates carried over
    assert first.est.checkpoint == pytest.approx(before.checkpoint, rel=1e-9)
    assert first.est.step == before.step
    assert first.steps == pytest.approx(daly_interval(0.02, 60.0) / 1e-3, abs=1)


def test_stop_checks_between_checkpoints():
    job = Job(lambda: Every(10_000), 2, lambda w, s: 1e-3, 0.01).run(0, 1)
    first = job.schedules[0]
    # the first plan: the time per step is not known yet, so checks after 1, 2, 4, 8 ... steps
    probe = Schedule(Every(10_000), clock=Clock())
    probe.resume()
    probe.begin(0)
    probe.end(0, None)
    assert probe.interval.stop_stride is None
    assert [s for s in range(100) if probe.stop_check_due(s)] == [0, 1, 3, 7, 15, 31, 63]
    assert probe.stop_checks == 7
    # known pace: every stop_seconds (2 s) = 2000 steps of 1 ms
    assert first.interval.stop_stride == 2000
    job = Job(lambda: Every(10_000), 2, lambda w, s: 1e-3, 0.01, stop_seconds=0.5).run(0, 20)
    plan = job.schedules[1].interval
    assert plan.stop_stride == 500
    checks = [s for s in range(20, 3000) if job.schedules[1].stop_check_due(s)]
    assert checks == [519, 1019, 1519, 2019, 2519]


def test_a_stop_request_travels_in_the_reduction():
    job = Job(lambda: Every(5), 3, uneven, 0.01).run(0, 12)
    assert not any(s.stop for s in job.schedules)
    job.checkpoint(12, stop={1})  # worker 1 got SIGUSR1
    assert all(s.stop for s in job.schedules)


def test_changed_reports_new_intervals_not_wobbles():
    s = Schedule(EverySeconds(1.0), clock=Clock())
    plans = []
    for n in (100, 105, 95, 130, 131, 50):
        s.interval = Interval(0, n, None, s.est, "p")
        plans.append(s.changed())
    assert plans == [True, False, False, True, False, True]


def test_summary_counts_checkpoint_time():
    job = Job(lambda: Every(100), 1, lambda w, s: 1e-3, 0.05).run(0, 1000)
    text = job.schedules[0].summary()
    assert text.startswith("11 checkpoint(s) took 0.550 s of 1.550 s in the loop (35.48 %)")


def test_a_policy_is_pluggable():
    class Twice(Policy):
        def interval(self, step, est):
            return 2

    job = Job(Twice, 2, uneven, 0.01).run(0, 7)
    assert job.checkpoint_steps == [0, 2, 4, 6, 7]
