"""Process isolation: each model runs in warm worker processes of its own.

Modules, one job each: :mod:`.protocol` (frames on the private socket), :mod:`.wire` (llm
objects and exceptions across it), :mod:`.worker` (the worker's main), :mod:`.remote_response`
(the response ``execute()`` sees in the worker), :mod:`.handle` (the parent's handle on one
worker), :mod:`.pool` (warm workers per model), :mod:`.registry` (worker records for
``llm async workers``), :mod:`.server` (the ``process`` server of :mod:`..serving`).
"""
