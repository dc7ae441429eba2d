-- Read replication-log entries after seq ARGV[1], at most ARGV[2] of them, atomically with the
-- log's first seq (trimming shifts list indexes). Returns {first, applied, op1, fx1, op2, fx2, ...}.
local first = tonumber(redis.call('GET', 'meta:logfirst') or '0')
local applied = tonumber(redis.call('GET', 'meta:applied') or '0')
local from, max = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {first, applied}
if first == 0 or from + 1 < first or from >= applied then return out end
local a = from + 1 - first
local b = a + max - 1
local ops = redis.call('LRANGE', 'log', a, b)
local fxs = redis.call('LRANGE', 'logfx', a, b)
for i = 1, #ops do
  out[#out + 1] = ops[i]
  out[#out + 1] = fxs[i]
end
return out
