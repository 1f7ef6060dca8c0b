"""Abuse limits, as Shopify's Admin API has them: every operation's requested cost
(``cost``, ``prices``) charged to its token's bucket, and a bucket of requests per client
address for callers without a valid token (``throttle``); buckets in memory or Redis
(``buckets``, ``redis_buckets``); the schema extension that charges operations
(``extension``); the cost in a cached answer (``bodies``)."""
