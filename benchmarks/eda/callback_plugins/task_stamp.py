"""Benchmark helper: record when a playbook's first task starts and when the play ends.

Enabled with ``ANSIBLE_CALLBACKS_ENABLED=task_stamp``; writes empty files named
``start-<epoch>-<pid>`` and ``end-<epoch>-<pid>`` into ``$BENCH_STAMP_DIR``, so the
benchmark times both systems the same way (ansible-rulebook removes its runner artifacts).
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


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_stamp"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._started = False

    def _stamp(self, kind: str) -> None:
        directory = os.environ.get("BENCH_STAMP_DIR")
        if directory:
            name = f"{kind}-{time.time():.6f}-{os.getpid()}"
            with open(os.path.join(directory, name), "w"):
                pass

    def v2_playbook_on_task_start(self, task, is_conditional):
        if not self._started:
            self._started = True
            self._stamp("start")

    def v2_playbook_on_stats(self, stats):
        self._stamp("end")
