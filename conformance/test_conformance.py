"""The suite as a test module: ``pytest --pyargs conformance --llm-model ID`` collects it."""

from __future__ import annotations

from conformance.standard import SyncModelConformance


class TestConformance(SyncModelConformance):
    """Checks the model named by ``--llm-model`` or ``--llm-cell``."""
