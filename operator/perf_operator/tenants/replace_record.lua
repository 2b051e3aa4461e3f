-- Replace a tenant's limits record as a whole, atomically: a reader sees the old record or the
-- new one, never a mix. The version only goes up, also across a Redis that lost its data (the
-- operator passes the last version it reported as the floor).
--
-- KEYS[1]  <prefix>{<tenant>}:limits
-- ARGV[1]  owner: the TenantQuota, "<namespace>/<name>"
-- ARGV[2]  digest of the limits document
-- ARGV[3]  the limits document (JSON)
-- ARGV[4]  writtenAt (RFC 3339)
-- ARGV[5]  version floor
-- ARGV[6]  ownerSince: the owner's creationTimestamp (RFC 3339, UTC, "Z"), "" when unknown
--
-- The oldest TenantQuota claiming the key owns it (ownerSince, then owner): a younger one gets
-- {"conflict", owner} and writes nothing; an older one takes the record over, also when the
-- younger wrote it first after a data loss. A record without ownerSince stays its owner's.
--
-- Returns {"conflict", owner} when another TenantQuota owns the key (nothing is written),
-- {"unchanged", version, writtenAt} when the record already has this digest, else
-- {"written", version, writtenAt}.
local current = redis.call('HMGET', KEYS[1], 'owner', 'digest', 'version', 'writtenAt',
                           'ownerSince')
if current[1] and current[1] ~= ARGV[1] then
  local since = current[5]
  if not since or ARGV[6] == '' or since < ARGV[6] or (since == ARGV[6] and current[1] < ARGV[1]) then
    return {'conflict', current[1]}
  end
elseif current[2] == ARGV[2] and (ARGV[6] == '' or current[5] == ARGV[6]) then
  return {'unchanged', current[3], current[4]}
end
local version = math.max(tonumber(current[3]) or 0, tonumber(ARGV[5])) + 1
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', version, 'digest', ARGV[2], 'owner', ARGV[1],
           'writtenAt', ARGV[4], 'limits', ARGV[3])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'ownerSince', ARGV[6])
end
return {'written', tostring(version), ARGV[4]}
