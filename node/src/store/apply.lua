-- Apply a batch of replicated changes, each atomically together with its sequence number.
--
-- ARGV[1] mode: 'lead' (assign the next seq, check preconditions, compute effects) or
--               'replay' (apply the entry with the given seq using the leader's effects)
-- ARGV[2] log capacity (entries), ARGV[3] log size cap (bytes)
-- then, per change, three arguments: seq (replay only; '0' in lead mode), op (msgpack array,
-- see node/src/op.rs), effects (msgpack map computed by the leader; replay only).
--
-- Returns one result per change: {'ok', seq, effects} | {'dup', applied} | {'gap', applied} |
-- {'err', code, message}. A replay stops at the first gap.
-- Effects name every key the change deletes and every derived metadata value, so that replaying
-- the log over a fuzzy snapshot (full resync) converges to exactly the leader's state.
--
-- Bookkeeping lives in the hash `meta` (applied, logfirst, logbytes); the log is the list `log`
-- holding op and effects alternately, oldest first.
local mode = ARGV[1]
local cap, maxbytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local m = redis.call('HMGET', 'meta', 'applied', 'logfirst', 'logbytes')
local applied, first, bytes = tonumber(m[1] or '0'), tonumber(m[2] or '0'), tonumber(m[3] or '0')

local function parent_of(p)
  local i = string.find(p, '/[^/]*$')
  if i == nil or i == 1 then return nil, string.sub(p, 2) end
  return string.sub(p, 1, i - 1), string.sub(p, i + 1)
end

local function index_add(p)
  local dir, name = parent_of(p)
  while dir ~= nil do
    redis.call('ZADD', 'dir:' .. dir, 0, name)
    local up, upname = parent_of(dir)
    name = upname .. '/'
    dir = up
  end
end

local function index_remove(p)
  local dir, name = parent_of(p)
  while dir ~= nil do
    redis.call('ZREM', 'dir:' .. dir, name)
    if redis.call('EXISTS', 'dir:' .. dir) == 1 then break end
    local up, upname = parent_of(dir)
    name = upname .. '/'
    dir = up
  end
end

-- The keys holding the current version's bytes, from its metadata (lead mode only).
local function chunk_keys(meta_key)
  local cur = redis.call('HMGET', meta_key, 'blob', 'chunks', 'upset')
  if not cur[1] then return {} end
  local keys = {}
  for i = 0, tonumber(cur[2] or '0') - 1 do keys[#keys + 1] = cur[1] .. i end
  if cur[3] and cur[3] ~= '' then keys[#keys + 1] = cur[3] end
  return keys
end

local function apply_one(seq_arg, op_blob, fx_blob)
  local seq
  if mode == 'lead' then
    seq = applied + 1
  else
    seq = tonumber(seq_arg)
    if seq <= applied then return {'dup', applied} end
    if seq ~= applied + 1 then return {'gap', applied} end
  end
  local function set_meta(meta_key, m)
    redis.call('HSET', meta_key, 'size', m.size, 'etag', m.etag, 'type', m.ctype, 'mtime', m.mtime,
      'seq', seq, 'blob', m.blob, 'chunks', m.chunks, 'csize', m.csize, 'upset', m.upset or '')
  end
  local op = cmsgpack.unpack(op_blob)
  local kind = op[1]
  local path = op[2]
  local fx
  if mode == 'lead' then fx = {dels = {}} else fx = cmsgpack.unpack(fx_blob) end

  local meta_key = 'f:' .. path
  if kind == 'put' then
    -- {'put', path, must_exist, etag, ctype, mtime, size, chunk...}
    if mode == 'lead' then
      if op[3] == 1 and redis.call('EXISTS', meta_key) == 0 then
        return {'err', 'NOTFOUND', 'no such file ' .. path}
      end
      fx.dels = chunk_keys(meta_key)
      local nchunks = #op - 7
      local csize = 0
      if nchunks > 0 then csize = string.len(op[8]) end
      fx.meta = {size = op[7], etag = op[4], ctype = op[5], mtime = op[6], blob = 'c:' .. seq .. ':',
                 chunks = nchunks, csize = csize}
    end
    for _, k in ipairs(fx.dels) do redis.call('DEL', k) end
    for i = 8, #op do redis.call('SET', fx.meta.blob .. (i - 8), op[i]) end
    set_meta(meta_key, fx.meta)
    index_add(path)
  elseif kind == 'del' then
    if mode == 'lead' then
      if redis.call('EXISTS', meta_key) == 0 then return {'err', 'NOTFOUND', 'no such file ' .. path} end
      fx.dels = chunk_keys(meta_key)
    end
    for _, k in ipairs(fx.dels) do redis.call('DEL', k) end
    redis.call('DEL', meta_key)
    index_remove(path)
  elseif kind == 'part' then
    -- {'part', path, upload, index, etag, data}
    local prefix = 'u:' .. path .. '\n' .. op[3] .. '\n'
    redis.call('SET', prefix .. op[4], op[6])
    redis.call('HSET', 'up:' .. path .. '\n' .. op[3], op[4], op[5])
  elseif kind == 'commit' then
    -- {'commit', path, upload, parts, ctype, mtime}
    local upset = 'up:' .. path .. '\n' .. op[3]
    local prefix = 'u:' .. path .. '\n' .. op[3] .. '\n'
    if mode == 'lead' then
      local n = op[4]
      local size, csize, tags = 0, 0, {}
      for i = 0, n - 1 do
        local tag = redis.call('HGET', upset, tostring(i))
        if not tag then return {'err', 'ERR', 'upload ' .. op[3] .. ' has no part ' .. i} end
        tags[#tags + 1] = tag
      end
      for i = 0, n - 1 do
        local len = redis.call('STRLEN', prefix .. i)
        if i == 0 then csize = len end
        if i < n - 1 and len ~= csize then
          return {'err', 'ERR', 'part ' .. i .. ' has ' .. len .. ' bytes; all parts but the last must have ' .. csize}
        end
        size = size + len
      end
      local extra = redis.call('HLEN', upset) - n
      if extra > 0 then return {'err', 'ERR', 'upload ' .. op[3] .. ' has ' .. extra .. ' part(s) beyond ' .. n} end
      fx.dels = chunk_keys(meta_key)
      fx.meta = {size = size, etag = redis.sha1hex(table.concat(tags)) .. '-' .. n, ctype = op[5],
                 mtime = op[6], blob = prefix, chunks = n, csize = csize, upset = upset}
    end
    for _, k in ipairs(fx.dels) do
      -- Replacing a file with a new upload of the same id must not delete the new parts.
      if string.sub(k, 1, #prefix) ~= prefix and k ~= upset then redis.call('DEL', k) end
    end
    set_meta(meta_key, fx.meta)
    index_add(path)
  elseif kind == 'abort' then
    local upset = 'up:' .. path .. '\n' .. op[3]
    local prefix = 'u:' .. path .. '\n' .. op[3] .. '\n'
    if mode == 'lead' then
      if redis.call('HGET', meta_key, 'upset') == upset then
        return {'err', 'ERR', 'upload ' .. op[3] .. ' is committed; DELETE the file instead'}
      end
      local idx = redis.call('HKEYS', upset)
      if #idx == 0 then return {'err', 'NOTFOUND', 'no such upload ' .. op[3]} end
      for _, i in ipairs(idx) do fx.dels[#fx.dels + 1] = prefix .. i end
      fx.dels[#fx.dels + 1] = upset
    end
    for _, k in ipairs(fx.dels) do redis.call('DEL', k) end
  else
    return {'err', 'ERR', 'unknown op ' .. tostring(kind)}
  end

  -- The change and its seq become visible together; then the replication log is appended.
  if mode == 'lead' then fx_blob = cmsgpack.pack(fx) end
  applied = seq
  if first == 0 then first = seq end
  redis.call('RPUSH', 'log', op_blob, fx_blob)
  bytes = bytes + string.len(op_blob) + string.len(fx_blob)
  local len = applied - first + 1
  while len > cap or (bytes > maxbytes and len > 1) do
    local e = redis.call('LPOP', 'log', 2)
    bytes = bytes - string.len(e[1]) - string.len(e[2])
    first = first + 1
    len = len - 1
  end
  return {'ok', seq, fx_blob}
end

local results = {}
for i = 4, #ARGV, 3 do
  local r = apply_one(ARGV[i], ARGV[i + 1], ARGV[i + 2])
  results[#results + 1] = r
  if r[1] == 'gap' then break end
end
redis.call('HSET', 'meta', 'applied', applied, 'logfirst', first, 'logbytes', bytes)
return results
