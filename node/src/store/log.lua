-- Read replication-log entries after seq ARGV[1], at most ARGV[2] of them, atomically with the
-- log's bounds (trimming shifts list indexes) and the epoch of the entry at ARGV[1] itself, for
-- log matching. The list `log` holds epoch, op and effects of each entry.
-- Returns {first, applied, appliedepoch, epoch-at-from (-1: not held), e1, op1, fx1, ...}.
local m = redis.call('HMGET', 'meta', 'applied', 'logfirst', 'appliedepoch', 'baseepoch')
local applied, first = tonumber(m[1] or '0'), tonumber(m[2] or '0')
local appliedepoch, baseepoch = tonumber(m[3] or '0'), tonumber(m[4] or '0')
local from, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = -1
if from == applied then
  at = appliedepoch
elseif from == 0 then
  at = 0
elseif first > 0 and from == first - 1 then
  at = baseepoch
elseif first > 0 and from >= first and from < applied then
  at = tonumber(redis.call('LINDEX', 'log', (from - first) * 3))
end
local out = {first, applied, appliedepoch, at}
if first == 0 or from + 1 < first or from >= applied then return out end
local a = (from + 1 - first) * 3
local items = redis.call('LRANGE', 'log', a, a + max * 3 - 1)
for i = 1, #items do out[#out + 1] = items[i] end
return out
