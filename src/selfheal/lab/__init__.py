"""The lab: a small fleet of hosts on one machine for trying selfheal end to end.

Each host is a network namespace on a private bridge (or, without root, a 127.0.0.x
address) running its own sshd and supervisord with a demo web service; Ansible reaches
them over SSH through a generated inventory. See docs/lab.md.
"""

from selfheal.lab.lab import Lab, LabError
from selfheal.lab.plan import HostSpec, LabSpec, default_state_dir

__all__ = ["HostSpec", "Lab", "LabError", "LabSpec", "default_state_dir"]
