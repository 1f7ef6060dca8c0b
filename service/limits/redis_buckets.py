"""Token buckets in Redis, shared by every instance of a deployment.

One Lua script per take reads the bucket, refills it for the time passed (Redis's clock, the
same for every instance), takes the cost if it is there and writes it back, atomically; a
bucket short of full expires when it would be full again. Keys are
``supplygraph:limits:<deployment>:<bucket>``, the deployment named as its event channel is
(``integrations/bus/channel.py``), so deployments sharing a Redis keep their own buckets.

When Redis does not answer, a take is allowed (logged at most every ``LOG_EVERY`` seconds): a
limit on abuse must not take the API down with Redis.
"""

from __future__ import annotations

import logging
import time

from redis.asyncio import Redis

from service.limits.buckets import Take

log = logging.getLogger(__name__)
LOG_EVERY = 10.0

TAKE = """
local cost = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local stored = redis.call('HMGET', KEYS[1], 'points', 'at')
local available = capacity
if stored[1] then
  local elapsed = math.max(0, now - tonumber(stored[2]))
  available = math.min(capacity, tonumber(stored[1]) + elapsed * rate)
end
if cost > available then
  return {0, tostring(available), tostring((cost - available) / rate)}
end
available = available - cost
if available < capacity then
  redis.call('HSET', KEYS[1], 'points', tostring(available), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - available) / rate * 1000) + 1000)
end
return {1, tostring(available), '0'}
"""


class RedisBuckets:
    def __init__(self, url: str, *, prefix: str) -> None:
        self._redis: Redis = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._take = self._redis.register_script(TAKE)
        self._prefix = prefix
        self._logged_at = float("-inf")

    async def take(self, key: str, cost: float, *, capacity: float, rate: float) -> Take:
        try:
            taken, available, retry_after = await self._take(
                keys=[self._prefix + key], args=[cost, capacity, rate]
            )
        except Exception as error:  # Redis down: allowed, not refused
            now = time.monotonic()
            if now - self._logged_at >= LOG_EVERY:
                self._logged_at = now
                log.warning("rate limits: Redis failed, requests are not limited: %s", error)
            return Take(True, capacity, 0.0)
        return Take(bool(taken), float(available), float(retry_after))

    async def close(self) -> None:
        await self._redis.aclose()
