"""Machinery shared by the runbooks (:mod:`octavia_workflows.flows`).

Nothing here knows a particular runbook: the steps of a target and its
lifecycle (:mod:`.steps`, :mod:`.target`), pacing and the circuit
breaker (:mod:`.pacing`, :mod:`.runstate`), reads made ahead
(:mod:`.readahead`), the flow's shape (:mod:`.shape`), approval gates
(:mod:`.gates`), the cloud inventory (:mod:`.inventory`), the amphora
and compute-host helpers several runbooks use (:mod:`.amphora`,
:mod:`.hosts`) and operator commands (:mod:`.commands`).  Runbooks
import from here, never from each other; nothing here imports a runbook,
the CLI or the engine.
"""
