"""The after-sales (return stock-in) aggregate:

- ``models``: ``AfterSalesOrder`` and its statuses (its push and withdraw state is the
  ``WarehouseDocument`` it shares with a warehouse order);

- ``commands``: create, convert a failed withdraw, push, apply the warehouse's word, reconcile;
- ``status_events``: the event every change of a return records;
- ``queries``: reads: the filtered list of returns and one return.
"""
