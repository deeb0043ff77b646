"""Fault injection and chaos experiments on the lab fleet.

    faults.FAULTS                    the catalog: name -> playbook under playbooks/chaos/
    experiment.load(path)            an experiment file, validated (errors name the field)
    engine.run_experiment(...)       steady state, method, detection, heal, expectations,
                                     rollbacks; returns the report
    history.append / history.read    the JSONL history under the lab's state directory

See docs/chaos.md.
"""

from selfheal.chaos.experiment import Experiment, load_experiment
from selfheal.chaos.faults import FAULTS, Fault
from selfheal.chaos.inventory import LabInventory

__all__ = ["FAULTS", "Experiment", "Fault", "LabInventory", "load_experiment"]
