"""The distribution aggregate. Its commands are split by topic rather than kept in one
``commands.py``:

- ``models``: partnerships, distribution warehouses, third-party warehouses, settings,
  warehouse orders (and the ``WarehouseDocument`` a return shares), withdrawals and warehouse
  tasks;
- ``partnerships``: commands: partnerships, distribution warehouses, third-party warehouses and
  distribution settings;
- ``pushes``: commands: pushing orders to third-party warehouses and applying what they report;
- ``withdrawals``: commands: the withdraw cascade, its retries, closes and conversions;
- ``tasks``: the third-party warehouse work queue (enqueue, lease, retry, finish);
- ``queries``: reads: partnerships, distribution warehouses, third-party warehouses, settings,
  withdrawals.
"""
