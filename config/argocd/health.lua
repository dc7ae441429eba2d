-- Argo CD health of FileCluster and HashRange (the same rules for both):
--   Progressing while status.observedGeneration < metadata.generation (or no status yet),
--   Degraded when condition Degraded is True, Healthy when condition Ready is True,
--   Progressing otherwise.
hs = {}
if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator"
  return hs
end
local gen = obj.metadata.generation
local seen = obj.status.observedGeneration
if gen ~= nil and (seen == nil or seen < gen) then
  hs.status = "Progressing"
  hs.message = "the operator has not acted on generation " .. gen .. " yet"
  return hs
end
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Degraded" and c.status == "True" then
      hs.status = "Degraded"
      hs.message = c.message
      return hs
    end
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" and c.status == "True" then
      hs.status = "Healthy"
      hs.message = c.message
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "waiting for Ready"
return hs
