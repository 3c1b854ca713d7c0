"""An in-process engine's Lambda workers started ahead of a run, so that their init (Infer's: importing torch)
overlaps the deploy and the uploads: as each function is packaged, before it exists (``prestarter``), or as it
is published (``prewarmer``), or for an existing deployment (``prewarm_deployment``). A speed-up only: a failure
to start them is logged and the run goes on with cold workers.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from cosmicai.deploy import Deployment, Planned, Stack, planned_requests
from cosmicai.targets import TargetSettings

logger = logging.getLogger(__name__)

WORKERS = {"infer": None, "initialize": 1, "summarize": 1}  # workers per function (None: as many as run at once)


def prewarmer(engine: Any) -> Callable[[str, str], None] | None:
    """What ``deploy`` calls as each function is published: an in-process engine starts its workers then, so they
    import their handlers (Infer: torch) while the deploy and the uploads go on. Initialize and Summarize run once
    per execution: one worker each; Infer: as many as run at once."""
    if engine is None or not hasattr(engine, "prewarm"):
        return None

    def prewarm(key: str, arn: str) -> None:
        if key not in WORKERS:
            return
        try:
            engine.prewarm(arn, WORKERS[key])
        except Exception as exc:  # a speed-up only: the run goes on with cold workers (said, for it is a bug)
            logger.warning("could not start %s's workers ahead of the run (they start cold): %s", key, exc)

    return prewarm


def prestarter(engine: Any) -> Planned | None:
    """What ``deploy`` calls as each function is packaged: an in-process engine starts its workers then, before the
    function exists (as its first version will be), so the imports overlap the whole deploy (see ``prewarmer``)."""
    if engine is None or not hasattr(engine, "prestart"):
        return None

    def prestart(key: str, account: str, region: str, request: dict[str, Any]) -> None:
        if key not in WORKERS:
            return
        try:
            engine.prestart(account, region, request, WORKERS[key])
        except Exception as exc:  # a speed-up only: the workers start when the function is published
            logger.warning("could not start %s's workers before its deploy: %s", key, exc)

    return prestart


def prewarm_deployment(engine: Any, deployment: Deployment) -> None:
    """Start the workers of an existing deployment's functions (see ``prewarmer``)."""
    prewarm = prewarmer(engine)
    if prewarm is not None:
        for key, arn in deployment.function_arns.items():
            prewarm(key, arn)


def prestart_stack(engine: Any, target: TargetSettings, stack: Stack) -> None:
    """Start the workers of ``stack``'s functions as ``deploy`` will create them, before the engine itself starts
    (see ``prestarter``): the earliest point, so their imports overlap the engine's start too."""
    prestart = prestarter(engine)
    if prestart is None:
        return
    try:
        planned = planned_requests(target, stack)
    except Exception as exc:  # a speed-up only: deploy packages again and says what fails
        logger.warning("could not plan the functions' workers before the start: %s", exc)
        return
    for key in WORKERS:  # Infer first: its init (torch) is the longest
        prestart(key, "", target.region, planned[key])
