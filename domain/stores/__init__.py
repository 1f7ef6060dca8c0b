"""The stores aggregate:

- ``models``: buyers' online stores, their products and variants, product links;
- ``data``: the store payloads the domain receives, independent of the wire format;
- ``commands``: connect a store, record a sync and the store products it brought;
- ``inbox``: the webhook inbox that store orders are taken in from;
- ``queries``: reads: pages of stores and of a store's products, a buyer's store by id.
"""
