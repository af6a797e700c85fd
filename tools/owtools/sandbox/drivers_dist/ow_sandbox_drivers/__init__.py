"""Octavia drivers for the octavia-workflows sandbox cloud.

Each driver subclasses Octavia's own no-op driver and adds, on every call,
the latency and failure injection read from the sandbox's knobs file (see
:mod:`ow_sandbox_drivers.knobs`). The sandbox directory comes from the
``OW_SANDBOX_DIR`` environment variable that the sandbox sets for the
processes it starts; without it the drivers behave like the stock no-op
drivers.
"""
