"""The catalogue aggregate:

- ``models``: supplier products, SKUs, price tiers, logistics methods and freight rules;
- ``commands``: create products and logistics methods, change SKUs, discontinue products;
- ``links``: commands: link store products (and single order lines) to supplier SKUs, mark
  links stale when a SKU drifts;
- ``pricing``: rules: prices and freight, where order amounts are computed;
- ``queries``: reads: pages of products and logistics methods.
"""
