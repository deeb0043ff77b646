"""The GitOps bundle's Python side: a kustomize subset to build the overlays, the freeze
decision for an environment (the policy engine's windows), and the generated files
(Argo CD sync windows from the freeze calendar, the PrometheusRule). See docs/gitops.md.
"""

from selfheal.gitops.freeze import GITOPS_RISK, FreezeState, freeze_state
from selfheal.gitops.kustomize import build
from selfheal.gitops.render import sync_windows

__all__ = ["GITOPS_RISK", "FreezeState", "build", "freeze_state", "sync_windows"]
