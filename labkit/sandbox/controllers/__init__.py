"""The controller-manager: the control loops the daemon runs on the API server's event loop.

Each loop is one module of one shape (:mod:`labkit.sandbox.controllers.base`); ``CONTROLLERS`` lists
them as ``async def run_x(core)`` functions, in the order the daemon starts them.
"""

from __future__ import annotations

from labkit.sandbox.controllers.cronjob import run_cronjob_controller
from labkit.sandbox.controllers.daemonset import run_daemonset_controller
from labkit.sandbox.controllers.deployment import run_deployment_controller
from labkit.sandbox.controllers.disruption import run_disruption_controller
from labkit.sandbox.controllers.endpoints import run_endpoints_controller
from labkit.sandbox.controllers.job import run_job_controller
from labkit.sandbox.controllers.notsimulated import run_not_simulated_notices
from labkit.sandbox.controllers.replicaset import run_replicaset_controller
from labkit.sandbox.controllers.scheduler import run_scheduler
from labkit.sandbox.controllers.statefulset import run_statefulset_controller
from labkit.sandbox.controllers.taints import run_taint_eviction_controller

__all__ = ["CONTROLLERS"]

CONTROLLERS = (
    run_scheduler,
    run_deployment_controller,
    run_replicaset_controller,
    run_job_controller,
    run_endpoints_controller,
    run_not_simulated_notices,
    run_daemonset_controller,
    run_statefulset_controller,
    run_cronjob_controller,
    run_disruption_controller,
    run_taint_eviction_controller,
)
