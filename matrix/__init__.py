"""The repository's compatibility matrix over real sync-only plugins; not part of the wheel.

Plugin authors get the suite (``conformance``: clauses, pytest plugin, runner, reports). This
package is the project's own tooling around it: the matrix file and its loader (``cells``),
offline fixtures for third-party plugins (``fixtures``), the ``--llm-cell``/``--llm-fixture``
pytest plugin (``pytest_cells``, loaded with ``-p matrix.pytest_cells``) and the
COMPATIBILITY.md builder (``report``). It is importable from a checkout (the repository root
on ``sys.path``), which is how tox's cells, the tests and the workflows use it.
"""
