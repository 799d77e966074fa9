-- Argo CD health of a neuroscale.io/InferenceCascade, read from the status the operator writes.
-- Argo CD runs this without Lua's string library, so the script only compares and concatenates.
local function condition(name)
  for _, c in ipairs(obj.status.conditions or {}) do
    if c.type == name then return c end
  end
  return {}
end

local function explain(c)
  if c.message ~= nil and c.message ~= "" then return c.message end
  return c.reason or ""
end

local generation = obj.metadata.generation or 0
if obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration < generation then
  return {status = "Progressing", message = "Waiting for the operator to observe generation " .. generation}
end

-- Resolved=False: the spec cannot work; the running gateway is left alone.
-- Ready means the gateway serves: a tier or the cache that is not ready does not block it (the cascade escalates
-- past the tier, or serves uncached), and Ready's message names the tiers not ready.
local resolved, degraded, ready = condition("Resolved"), condition("Degraded"), condition("Ready")
if resolved.status == "False" then return {status = "Degraded", message = explain(resolved)} end
if degraded.status == "True" then return {status = "Degraded", message = explain(degraded)} end
if ready.status == "True" then return {status = "Healthy", message = explain(ready)} end
-- spec.gateway.replicas: 0 is a choice, not a fault (Ready says ScaledToZero).
if ready.reason == "ScaledToZero" then return {status = "Suspended", message = explain(ready)} end
return {status = "Progressing", message = explain(ready)}
