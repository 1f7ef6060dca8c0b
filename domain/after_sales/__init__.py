"""The after-sales (return stock-in) aggregate; its model is, for now, in
``domain.distribution.models`` (``AfterSalesOrder``):

- ``commands``: create, convert a failed withdraw, push, apply the warehouse's word, reconcile;
- ``status_events``: the event every change of a return records;
- ``queries``: reads: the filtered list of returns and one return.
"""
