"""How the domain is written to and read from the database where the ORM is not enough.

The rule modules of ``domain`` say what may happen and in what order; the statements that make
the hot paths fast live here, so no rule module holds SQL text:

- ``rows``: model instances built from raw rows (the ORM's own building cost more than the query);
- ``orders``: the order a command acts on, order lines with their SKUs, latest transitions;
- ``tokens``: a bearer token's viewer in one statement;
- ``trading``: whether a supplier and a buyer trade, two EXISTS in one statement;
- ``inbox``: store webhook bodies inserted in batches.

Where PostgreSQL and SQLite need different statements the operation is a ``DialectSwitch``
(``dialects``): one function per engine, registered under one name.
``tests/test_persistence_paths.py`` runs every switch on the engine of the run (SQLite in the
default suite, PostgreSQL in CI's second pass) and fails for a switch without a test there, so
neither path goes untested.
"""
