-- Argo CD health of FileCluster and HashRange (the same rules for both), in this order:
--   Progressing while there is no status yet;
--   Degraded when the spec was refused (HashRange Valid=False, or Degraded with reason
--     InvalidSet): checked first, because a refused set keeps observedGeneration behind;
--   Progressing while status.observedGeneration < metadata.generation;
--   Progressing while condition Progressing is True (a first rollout, followers syncing,
--     a failover or a table push under way) — not Degraded;
--   Degraded when condition Degraded is True; Healthy when Ready is True;
--   Progressing otherwise.
hs = {}
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end
local function cond(t)
  if obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then
      return c
    end
  end
  return nil
end
local valid = cond("Valid")
local degraded = cond("Degraded")
if valid ~= nil and valid.status == "False" then
  hs.status = "Degraded"
  hs.message = valid.message
  return hs
end
if degraded ~= nil and degraded.status == "True" and degraded.reason == "InvalidSet" then
  hs.status = "Degraded"
  hs.message = degraded.message
  return hs
end
local gen = obj.metadata.generation
local seen = obj.status.observedGeneration
if gen ~= nil and (seen == nil or seen < gen) then
  hs.status = "Progressing"
  hs.message = "the operator has not acted on generation " .. gen .. " yet"
  return hs
end
local progressing = cond("Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = progressing.message
  return hs
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message
  return hs
end
local ready = cond("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
hs.message = "waiting for Ready"
return hs
