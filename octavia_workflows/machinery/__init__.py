"""Machinery shared by the runbooks (:mod:`octavia_workflows.flows`).

Nothing here knows a particular runbook: the steps of a target and its
lifecycle (:mod:`.steps`, :mod:`.target`), pacing and the circuit
breaker (:mod:`.pacing`, :mod:`.runstate`), reads made ahead
(:mod:`.readahead`), the flow's shape (:mod:`.shape`), approval gates
(:mod:`.gates`), the cloud inventory (:mod:`.inventory`), the amphora
and compute-host helpers several runbooks use (:mod:`.amphora_plan`
to plan, :mod:`.amphora` to act, :mod:`.hosts`) and operator commands
(:mod:`.commands`).  The modules that define TaskFlow tasks or flows
(steps, lanes, shape, gates, retry, amphora) are for a runbook's
``flow`` module; planning uses the others, which import no TaskFlow.  Runbooks
import from here, never from each other; nothing here imports a runbook,
the CLI or the engine.
"""
