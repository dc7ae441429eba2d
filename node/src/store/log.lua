-- Read replication-log entries after seq ARGV[1], at most ARGV[2] of them, atomically with the
-- log's first seq (trimming shifts list indexes). The list `log` holds op and effects
-- alternately. Returns {first, applied, op1, fx1, op2, fx2, ...}.
local m = redis.call('HMGET', 'meta', 'applied', 'logfirst')
local applied, first = tonumber(m[1] or '0'), tonumber(m[2] or '0')
local from, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {first, applied}
if first == 0 or from + 1 < first or from >= applied then return out end
local a = (from + 1 - first) * 2
local items = redis.call('LRANGE', 'log', a, a + max * 2 - 1)
for i = 1, #items do out[#out + 1] = items[i] end
return out
