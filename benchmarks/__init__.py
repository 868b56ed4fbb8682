"""Reproducible performance figures of the adapter, against the 0.1 release and native async models.

Run ``python -m benchmarks`` (``--quick`` for a short run); results land in
``benchmarks/results/`` as JSON, Markdown and PNG plots.
"""
