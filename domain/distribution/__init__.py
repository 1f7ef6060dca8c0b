"""The distribution aggregate. Its commands are split by topic rather than kept in one
``commands.py``:

- ``models``: partnerships, distribution warehouses, third-party warehouse connections,
  settings, warehouse orders, withdrawals and warehouse tasks (after-sales orders too, for now);
- ``partnerships``: commands: partnerships, distribution warehouses, third-party warehouse
  connections and distribution settings;
- ``pushes``: commands: pushing orders to third-party warehouses and applying what they report;
- ``withdrawals``: commands: the withdraw cascade, its retries, closes and conversions;
- ``tasks``: the third-party warehouse work queue (enqueue, lease, retry, finish);
- ``queries``: reads: partnerships, distribution warehouses, connections, settings, withdrawals.
"""
