-- One rate-limit check, atomically: verify the caller's copy of the tenant's table is current,
-- then apply GCRA (the generic cell rate algorithm) to one endpoint rule's bucket.
--
-- KEYS[1]  the tenant's limits record  <prefix>{<tenant>}:limits   (hash, field "version")
-- KEYS[2]  the rule's bucket           <prefix>{<tenant>}:rl:<METHODS>:<pattern>:<requests>/<window>s+<burst>
-- ARGV[1]  the table version the caller matched the rule in
-- ARGV[2]  emission interval in microseconds: windowSeconds * 1e6 / requests
-- ARGV[3]  capacity: requests + burst, how many may pass back to back from an idle bucket
--
-- The bucket holds the theoretical arrival time (TAT, microseconds since the epoch) and expires
-- when the bucket is full again, so an idle tenant costs no memory.
--
-- Returns {1, remaining, 0} when allowed, {0, 0, retry_after_us} when denied, and
-- {-1, 0, 0} when the caller's table is not the current version (nothing is counted): it
-- reads the table again and retries.
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then
  return {-1, 0, 0}
end
local interval = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[2]))
if tat == nil or tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - capacity * interval
if now < allow_at then
  return {0, 0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[2], string.format('%.0f', new_tat),
           'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, math.floor((now - allow_at) / interval), 0}
