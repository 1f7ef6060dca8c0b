"""Service-level rules and their breaches: what is late, raised once when a rule's deadline
passes and cleared when the thing moves on.

- ``models``: ``SlaRule`` (the rules), ``SlaBreach`` (one per rule and episode), ``SlaSetting``
  (an organisation's own deadline or switch for a rule) and ``SweepLease`` (who sweeps);
- ``rules``: each rule's deadline, owner, and the rows it watches (the one place per rule);
- ``commands``: the sweep that opens and clears breaches, settling one subject after a change,
  the settings, the lease;
- ``queries``: the breaches and settings a caller may see.
"""
