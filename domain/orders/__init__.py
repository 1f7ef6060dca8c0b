"""The orders aggregate. Its commands are split by topic rather than kept in one ``commands.py``:

- ``models``: supply orders, their lines and timeline, deputes and quotes;
- ``status``: the order state machine (rules): the one place an order's status changes;
- ``access``: the order a command acts on, found within the caller's side or not found;
- ``intake``: commands: orders coming in, store orders and manual orders;
- ``fulfilment``: commands: shipping, delivery, cancel, abnormal holds and deputes;
- ``quotes``: commands: request, answer and decide a quote;
- ``tracking``: waking the tracking pusher when a store order ships;
- ``queries``: reads: order lists and pages, one order, status counts, quotes.
"""
