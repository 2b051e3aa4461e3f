-- Argo CD health of perf.idp.io PerformanceProfile, TenantQuota and PerformanceTarget (one
-- script for all three).
--
--   Progressing  being deleted (metadata.deletionTimestamp set: cleanup runs, the finalizer
--                goes when it is done)
--   Suspended    spec.paused is true, or Ready=False with reason Paused (a tenant whose
--                profile is paused)
--   Progressing  no Ready condition yet, status.observedGeneration behind metadata.generation,
--                Ready=Unknown, Ready=False with a reason that means work under way
--                (PROGRESS_REASONS: an index build, however long it takes), or Ready=False
--                for less than DEGRADED_AFTER_SECONDS
--   Healthy      Ready=True for the current generation
--   Degraded     Ready=False with a reason that retrying cannot fix (PERSISTENT_REASONS: a
--                rejected spec or setting, a conflict, a missing or unreadable Secret), at
--                once; or any other Ready=False
--                for DEGRADED_AFTER_SECONDS or longer (measured from the Ready condition's
--                lastTransitionTime, which moves only when its status changes)
--
-- Written for Argo CD's Lua (gopher-lua, Lua 5.1). The time rule needs the string and math
-- libraries: enable them with resource.customizations.useOpenLibs.<group>_<kind>: "true"
-- (manifests/argocd/health/kustomization.yaml does). Without them only the reason rules apply
-- and a failing object stays Progressing. health_test.yaml lists a case file per behaviour
-- (testdata/), in Argo CD's own test format.

local DEGRADED_AFTER_SECONDS = 600

-- The operator's api.conditions.PROGRESS_REASONS (a unit test keeps the two lists equal).
local PROGRESS_REASONS = {
  IndexBuilding = true,           -- CREATE INDEX CONCURRENTLY runs: hours on a large table
  IndexPending = true,            -- an index waits for its turn
  SignalsStale = true,            -- the application's metrics are not in Prometheus yet
}

-- The operator's api.conditions.PERSISTENT_REASONS (a unit test keeps the two lists equal).
local PERSISTENT_REASONS = {
  Rejected = true,                -- the spec is invalid: only a new spec helps
  RuleShadowed = true,            -- a rate-limit rule can never match: only a new spec helps
  SettingRejected = true,         -- PostgreSQL refused a parameter value
  SettingsRejected = true,        -- Redis refused a CONFIG value
  SettingsConflict = true,        -- another profile owns a Redis parameter on the same server
  SettingConflict = true,         -- another profile owns a PostgreSQL parameter on the server
  SettingOverridden = true,       -- the server's command line overrides a PostgreSQL parameter
  MirrorSchemaNotOwned = true,    -- another role owns the schema perf_operator
  IndexConflict = true,           -- an index of that name exists and is not the operator's
  TableConflict = true,           -- another tenant owns the tenant ID's record
  ProfileNotFound = true,         -- the tenant names a profile that does not exist
  ResourceConflict = true,        -- another field manager owns what the operator must set
  WebSocketOvercommitted = true,  -- the tenants commit more connections than the profile has
  -- the credentials: only creating, fixing or granting the Secret helps (the message names
  -- the Secret and key, never a value)
  SecretNotFound = true,          -- the Secret does not exist
  SecretKeyMissing = true,        -- it has no such key
  SecretValueInvalid = true,      -- the key's value is not UTF-8 text
  SecretForbidden = true,         -- the operator may not read Secrets in that namespace
  -- the trust boundary (docs/security.md): a platform admin or a new spec must act
  NamespaceNotSelected = true,    -- the PerformanceTarget does not select the namespace
  InlineConnectionsRefused = true, -- inline connections, and the operator accepts none
  ParameterNotAllowed = true,     -- a parameter the PerformanceTarget does not allow
  HostNotAllowed = true,          -- an inline host not on the operator's allow-list
  AddressRefused = true,          -- a link-local or metadata address
  URLRefused = true,              -- a Prometheus URL that is not http(s) or carries credentials
}

local function find_condition(conditions, wanted)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == wanted then
      return condition
    end
  end
  return nil
end

-- Seconds since 1970 of an RFC 3339 UTC time ("2025-01-31T12:00:00Z", as the API server writes
-- metav1.Time), or nil when it cannot be read. Computed by hand (days from the civil date)
-- instead of os.time{...}, which would interpret the fields in the controller's local zone.
local function epoch_seconds(timestamp)
  if type(timestamp) ~= "string" or string == nil or math == nil then
    return nil
  end
  local y, mo, d, h, mi, s = string.match(timestamp, "^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
  if y == nil then
    return nil
  end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then
    y = y - 1
  end
  local era = math.floor(y / 400)
  local year_of_era = y - era * 400
  local day_of_year = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local day_of_era = year_of_era * 365 + math.floor(year_of_era / 4)
    - math.floor(year_of_era / 100) + day_of_year
  local days = era * 146097 + day_of_era - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
end

local function describe(condition)
  local reason = condition.reason or "Unknown"
  if condition.message ~= nil and condition.message ~= "" then
    return reason .. ": " .. condition.message
  end
  return reason
end

local hs = {}
local spec = obj.spec or {}
local status = obj.status or {}
local metadata = obj.metadata or {}
local ready = find_condition(status.conditions, "Ready")

if metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: the operator is cleaning up"
  return hs
end

if spec.paused == true or (ready ~= nil and ready.status == "False" and ready.reason == "Paused") then
  hs.status = "Suspended"
  hs.message = (ready ~= nil and ready.reason == "Paused") and describe(ready)
    or "spec.paused is true"
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile"
  return hs
end

if status.observedGeneration == nil or status.observedGeneration ~= metadata.generation then
  hs.status = "Progressing"
  hs.message = "Reconciling generation " .. tostring(metadata.generation)
    .. " (last reconciled: " .. tostring(status.observedGeneration) .. ")"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Reconciled"
  return hs
end

if ready.status == "False" then
  if PROGRESS_REASONS[ready.reason] then
    hs.status = "Progressing"
    hs.message = describe(ready)
    return hs
  end
  if PERSISTENT_REASONS[ready.reason] then
    hs.status = "Degraded"
    hs.message = describe(ready)
    return hs
  end
  local since = epoch_seconds(ready.lastTransitionTime)
  if since ~= nil and os.time() - since >= DEGRADED_AFTER_SECONDS then
    hs.status = "Degraded"
    -- No figure that moves with the clock: Argo CD would see a new message every refresh.
    hs.message = describe(ready) .. " (failing for " .. tostring(math.floor(DEGRADED_AFTER_SECONDS / 60))
      .. " minutes or more)"
    return hs
  end
  hs.status = "Progressing"
  hs.message = describe(ready) .. " (retrying)"
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready)
return hs
