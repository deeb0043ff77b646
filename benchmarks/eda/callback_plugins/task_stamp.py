"""Benchmark helper: record when ansible-playbook was launched, when its first task starts
and when the play ends.

Enabled with ``ANSIBLE_CALLBACKS_ENABLED=task_stamp``; writes empty files named
``launch-<epoch>-<pid>``, ``start-<epoch>-<pid>`` and ``end-<epoch>-<pid>`` into
``$BENCH_STAMP_DIR``, so the benchmark times both systems the same way (ansible-rulebook
removes its runner artifacts). ``launch`` is when the kernel started this process (the
fork by ansible-runner), read from /proc: it splits POST -> first task into the
dispatcher's part and ansible-playbook's own start.
"""

from __future__ import annotations

import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: task_stamp
type: aggregate
short_description: write task start and play end times into BENCH_STAMP_DIR
description:
  - Benchmark helper for benchmarks/eda_side_by_side.py.
requirements:
  - enable in configuration (ANSIBLE_CALLBACKS_ENABLED=task_stamp)
"""


def launched_at() -> float | None:
    """This process's start as epoch seconds (Linux; resolution 1/CLK_TCK, 10 ms).

    /proc/self/stat field 22 is the start in clock ticks since boot; its age against
    CLOCK_BOOTTIME, subtracted from the wall clock, avoids /proc/stat's whole-second btime.
    """
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # the name may hold spaces
        ticks = int(fields[19])  # field 22 counted from 1; fields[0] is field 3
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.time() - age


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_stamp"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._started = False
        launched = launched_at()
        if launched is not None:
            self._stamp("launch", launched)

    def _stamp(self, kind: str, at: float | None = None) -> None:
        directory = os.environ.get("BENCH_STAMP_DIR")
        if directory:
            name = f"{kind}-{time.time() if at is None else at:.6f}-{os.getpid()}"
            with open(os.path.join(directory, name), "w"):
                pass

    def v2_playbook_on_task_start(self, task, is_conditional):
        if not self._started:
            self._started = True
            self._stamp("start")

    def v2_playbook_on_stats(self, stats):
        self._stamp("end")
