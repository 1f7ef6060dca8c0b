"""Every use of another library's private internals, one module per library.

The rest of the code imports such things only from here. Each module names the version it was
checked against (``TESTED_WITH``) and has a ``probe()`` that touches every internal it relies
on; ``tests/test_compat.py`` runs the probes and fails loudly when the installed version is not
the one checked, so an upgrade that moves an internal is caught by the suite, not in production.
To upgrade a library: bump it in ``pyproject.toml``, run ``tests/test_compat.py``, re-check the
internals the failing module lists, then bump its ``TESTED_WITH``.
"""
