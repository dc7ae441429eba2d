-- Read replication-log entries after seq ARGV[1], at most ARGV[2] of them and about ARGV[3]
-- bytes (always at least one entry, so an entry larger than the budget still moves), atomically
-- with the log's bounds (trimming shifts list indexes) and the epoch of the entry at ARGV[1]
-- itself, for log matching. The list `log` holds epoch, op and effects of each entry. Entries
-- are read one at a time so a log of large entries is never pulled into memory in one piece.
-- Returns {first, applied, appliedepoch, epoch-at-from (-1: not held), e1, op1, fx1, ...}.
local m = redis.call('HMGET', 'meta', 'applied', 'logfirst', 'appliedepoch', 'baseepoch')
local applied, first = tonumber(m[1] or '0'), tonumber(m[2] or '0')
local appliedepoch, baseepoch = tonumber(m[3] or '0'), tonumber(m[4] or '0')
local from, max, maxbytes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3] or '0')
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
if first == 0 or from + 1 < first or from >= applied or max <= 0 then return out end
local a = (from + 1 - first) * 3
local size = 0
for i = 0, max - 1 do
  local e = redis.call('LRANGE', 'log', a + i * 3, a + i * 3 + 2)
  if #e < 3 then break end
  -- Same accounting as LogEntry::size: op, effects and a fixed overhead.
  local s = #e[2] + #e[3] + 32
  if i > 0 and maxbytes > 0 and size + s > maxbytes then break end
  size = size + s
  out[#out + 1] = e[1]
  out[#out + 1] = e[2]
  out[#out + 1] = e[3]
end
return out
