-- Read a byte range of a file atomically with its metadata, so a concurrent replace can never
-- mix two versions. ARGV: path, offset, length, expected version ('' for any), the path's root
-- hash (8 hex digits).
-- Returns {applied, 'file', size, seq, data} | {applied, 'stale', seq} | {applied, 'none'} |
-- {applied, 'moved', table epoch} (the cluster does not own the hash):
-- `applied` is the store's applied seq, read atomically with the file, so the node can hold the
-- answer back until everything it may reflect is committed.
local applied = tonumber(redis.call('HGET', 'meta', 'applied') or '0')
local own = redis.call('HMGET', 'own', 'epoch', 'ranges', 'cluster')
if own[2] then
  -- A record of another cluster (copied from a split's source) gives this node nothing.
  local k, mine = tonumber(ARGV[5], 16), false
  if (own[3] or '') == (redis.call('GET', 'meta:cluster') or '') then
    for s, e in string.gmatch(own[2], '(%d+)-(%d+)') do
      if tonumber(s) <= k and k <= tonumber(e) then mine = true end
    end
  end
  if not mine then return {applied, 'moved', tonumber(own[1])} end
end
local meta_key = 'f:' .. ARGV[5] .. ':' .. ARGV[1]
local m = redis.call('HMGET', meta_key, 'size', 'seq', 'blob', 'chunks', 'csize')
if not m[1] then return {applied, 'none'} end
local size, seq, blob, chunks, csize = tonumber(m[1]), tonumber(m[2]), m[3], tonumber(m[4]), tonumber(m[5])
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= seq then return {applied, 'stale', seq} end
local offset, length = tonumber(ARGV[2]), tonumber(ARGV[3])
if offset >= size or length == 0 then return {applied, 'file', size, seq, ''} end
local last = math.min(size, offset + length) - 1
local parts = {}
local i = math.floor(offset / csize)
while i < chunks and i * csize <= last do
  local from = math.max(offset - i * csize, 0)
  local to = math.min(last - i * csize, csize - 1)
  parts[#parts + 1] = redis.call('GETRANGE', blob .. i, from, to)
  i = i + 1
end
return {applied, 'file', size, seq, table.concat(parts)}
