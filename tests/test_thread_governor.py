"""latent3d's own thread choice (runtime.ThreadGovernor): as many torch threads as the cores other processes leave
free, measured from /proc/stat minus this process's own CPU time. A fake /proc/stat and fake clocks play the
machine: a quiet box, one busy neighbour, the neighbour gone."""

from __future__ import annotations

import os
import time

import pytest
import torch

from latent3d import runtime
from latent3d.runtime import ThreadGovernor, _busy_seconds

HZ = 100  # the fake /proc/stat's clock ticks per second


class FakeMachine:
    """Two cores; ``tick(wall, own, others)`` advances the clocks and /proc/stat by that many seconds of work."""

    def __init__(self, path):
        self.path, self.wall, self.own, self.busy, self.idle = path, 100.0, 5.0, 50.0, 1000.0
        self.write()

    def write(self):
        user = round(self.busy * HZ)
        self.path.write_text(f"cpu  {user} 0 0 {round(self.idle * HZ)} 0 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n")

    def tick(self, wall: float, own: float, others: float):
        self.wall += wall
        self.own += own * wall
        self.busy += (own + others) * wall
        self.idle += max(0.0, 2 - own - others) * wall
        self.write()


@pytest.fixture
def machine(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(os, "sysconf", lambda name: HZ)
    m = FakeMachine(tmp_path / "stat")
    monkeypatch.setattr(time, "perf_counter", lambda: m.wall)
    monkeypatch.setattr(time, "process_time", lambda: m.own)
    old = torch.get_num_threads()
    yield m
    torch.set_num_threads(old)


def test_busy_seconds_reads_every_column_but_idle_and_iowait(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sysconf", lambda name: HZ)
    p = tmp_path / "stat"
    p.write_text("cpu  100 20 30 5000 400 6 7 8 9 10\n")  # guest columns (9, 10) are already counted in user
    assert _busy_seconds(str(p)) == pytest.approx((100 + 20 + 30 + 6 + 7 + 8) / HZ)
    p.write_text("intr 1 2 3\n")
    assert _busy_seconds(str(p)) is None
    assert _busy_seconds(str(tmp_path / "missing")) is None


def test_governor_uses_both_cores_alone_one_beside_a_busy_process_and_both_again_after(machine):
    gov = ThreadGovernor("cpu", every=5, stat_path=str(machine.path))
    assert gov.enabled
    machine.tick(2.0, own=1.0, others=0.05)  # loading the weights on a quiet machine
    assert gov.update() == 2 and torch.get_num_threads() == 2
    for _ in range(4):  # between re-measurements the count stays, whatever happens
        machine.tick(1.0, own=1.2, others=1.0)
        assert gov.update() == 2
    machine.tick(1.0, own=1.2, others=1.0)  # a neighbour takes a whole core
    assert gov.update() == 1 and torch.get_num_threads() == 1
    assert gov.others == pytest.approx(1.0, abs=0.05)
    for _ in range(5):  # it is still there
        machine.tick(1.0, own=1.0, others=1.0)
        gov.update()
    assert gov.threads == 1
    for _ in range(5):  # gone
        machine.tick(1.0, own=1.0, others=0.0)
        gov.update()
    assert gov.threads == 2 and torch.get_num_threads() == 2


def test_governor_leaves_the_users_thread_setting_and_cuda_alone(machine, monkeypatch):
    torch.set_num_threads(1)
    assert not ThreadGovernor("cuda", stat_path=str(machine.path)).enabled
    assert not ThreadGovernor("cpu", stat_path=str(machine.path / "missing")).enabled
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    gov = ThreadGovernor("cpu", every=1, stat_path=str(machine.path))
    machine.tick(2.0, own=1.0, others=0.0)
    assert not gov.enabled and gov.update() == 1 and torch.get_num_threads() == 1
