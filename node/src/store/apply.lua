-- Apply a batch of replicated changes, each atomically together with its (epoch, seq).
--
-- ARGV[1] mode: 'lead' (assign the next seq, check preconditions, compute effects) or
--               'replay' (apply the entry with the given seq using the leader's effects)
-- ARGV[2] log capacity (entries), ARGV[3] log size cap (bytes)
-- ARGV[4] lead: the epoch new entries get
-- ARGV[5] the applied seq the node believes its store holds ('' to skip the check): a store that
--         disagrees lost data behind the node's back (a Redis restarted from an old AOF), and
--         the whole batch is refused with {'lost', applied}
-- then, per change, six arguments: seq and epoch (replay; '0' in lead mode), op (msgpack array,
-- see node/src/op.rs), effects (msgpack map computed by the leader; replay only), and the
-- request's session and session seq (lead only; '' and '0' for an untagged request).
--
-- Returns one result per change:
--   {'ok', seq, effects}          applied (and logged) at seq
--   {'fail', seq, effects, code, message}  a tagged request refused by a precondition; the refusal
--                                 is logged at seq so its session advances on every replica
--   {'err', code, message, applied}  refused, nothing logged (untagged, or out of session order)
--   {'again', result}             a tagged request already processed: its first result
--   {'dup', applied} | {'gap', applied}  replay of an entry already applied / out of order
-- A replay stops at the first gap.
-- Effects name every key the change deletes (as ranges: the replaced version's blob prefix and
-- chunk count, an aborted upload's part indices) and every derived metadata value, so that replaying
-- the log over a fuzzy snapshot (full resync) converges to exactly the leader's state. They also
-- carry the request's session record (s, q, r) and the sessions it evicted (ev).
--
-- Ops are {name, hash, fields...} (node/src/op.rs); `hash` (8 hex digits, '' for ops without
-- a path) is removed first, so fields keep their positions. Every data key names it:
-- f:<h>:<path>, c:<h>:<epoch>.<seq>:<i>, u:<h>:<path>\n<upload>\n<i>, up:<h>:<path>\n<upload>,
-- dir:<h>:<dir>. The hash `own` (epoch, ranges, cluster) is what `cluster` owns, set by `own`
-- entries: in lead mode a change for a hash outside it is refused with MOVED and not logged. A
-- record of another cluster than this node's (`meta:cluster`; a split's new cluster copies its
-- source's log) gives this node nothing.
--
-- Bookkeeping lives in the hash `meta`: applied, appliedepoch (epoch of the entry at applied),
-- logfirst, logbytes, baseepoch (epoch of the entry just before logfirst). The log is the list
-- `log` holding epoch, op and effects of each entry, oldest first. Sessions: hash `sess:<id>`
-- (last, r<seq> → result) and the sorted set `sess` (id → seq of its last use, refreshed every
-- SESSION_STEP requests, for eviction).
local mode = ARGV[1]
local cap, maxbytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local lead_epoch, lead_epoch_s = tonumber(ARGV[4]), ARGV[4]
local m = redis.call('HMGET', 'meta', 'applied', 'logfirst', 'logbytes', 'appliedepoch', 'baseepoch')
local applied, first, bytes = tonumber(m[1] or '0'), tonumber(m[2] or '0'), tonumber(m[3] or '0')
local appliedepoch, baseepoch = tonumber(m[4] or '0'), tonumber(m[5] or '0')
if ARGV[5] ~= '' and tonumber(ARGV[5]) ~= applied then
  return {{'lost', applied}}
end

-- What the cluster owns: nil (no `own` entry yet) means everything; a record of another
-- cluster, nothing.
local mycluster = redis.call('GET', 'meta:cluster') or ''
local function parse_ranges(text, cluster)
  if not text then return nil end
  local out = {}
  if cluster ~= mycluster then return out end
  for s, e in string.gmatch(text, '(%d+)-(%d+)') do out[#out + 1] = {tonumber(s), tonumber(e)} end
  return out
end
local own = redis.call('HMGET', 'own', 'epoch', 'ranges', 'cluster')
local own_epoch, own_text, own_cluster = tonumber(own[1] or '0'), own[2], own[3] or ''
local owned = parse_ranges(own_text, own_cluster)
local function owns(h)
  if owned == nil or h == nil or h == '' then return true end
  local k = tonumber(h, 16)
  for _, r in ipairs(owned) do
    if r[1] <= k and k <= r[2] then return true end
  end
  return false
end

-- Sessions whose records are kept (the oldest by last use are evicted beyond this), and how many
-- recent results each keeps for retries (the router never has more in flight per session).
local MAX_SESSIONS = 10000
local SESSION_WINDOW = 256
local SESSION_STEP = 32

-- Lua turns a number into a string with a floating-point printf, a few percent of a write's
-- cost: numbers written to Redis are passed as strings wherever one is at hand (the ARGV, the
-- leader's effects), and small indices are converted once per batch.
local index_strings = {}
local function istr(n)
  local s = index_strings[n]
  if not s then
    s = tostring(n)
    index_strings[n] = s
  end
  return s
end

local function parent_of(p)
  local i = string.find(p, '/[^/]*$')
  if i == nil or i == 1 then return nil, string.sub(p, 2) end
  return string.sub(p, 1, i - 1), string.sub(p, i + 1)
end

local function index_add(h, p)
  local dir, name = parent_of(p)
  while dir ~= nil do
    redis.call('ZADD', 'dir:' .. h .. ':' .. dir, '0', name)
    local up, upname = parent_of(dir)
    name = upname .. '/'
    dir = up
  end
end

local function index_remove(h, p)
  local dir, name = parent_of(p)
  while dir ~= nil do
    redis.call('ZREM', 'dir:' .. h .. ':' .. dir, name)
    if redis.call('EXISTS', 'dir:' .. h .. ':' .. dir) == 1 then break end
    local up, upname = parent_of(dir)
    name = upname .. '/'
    dir = up
  end
end

-- The current version's bytes, from its metadata (lead mode only), as {blob prefix, chunks,
-- upload set}: its keys are prefix..0 .. prefix..(chunks-1), and the upload set if any. Effects
-- carry this triple rather than the keys, so an entry that replaces a file of 100 000 parts with
-- 1 KiB paths stays small.
local function old_version(meta_key)
  local cur = redis.call('HMGET', meta_key, 'blob', 'chunks', 'upset')
  if not cur[1] then return nil end
  return {cur[1], tonumber(cur[2] or '0'), cur[3] or ''}
end

-- Call each(key) for every key an entry's effects delete: the replaced version (old), the parts
-- of an aborted upload (up = {prefix, indices, upload set}), and, for entries logged before
-- effects carried ranges, the listed keys (dels).
local function deleted_keys(fx, each)
  for _, k in ipairs(fx.dels or {}) do each(k) end
  local v = fx.old
  if v then
    for i = 0, v[2] - 1 do each(v[1] .. istr(i)) end
    if v[3] ~= '' then each(v[3]) end
  end
  if fx.up then
    for _, i in ipairs(fx.up[2]) do each(fx.up[1] .. i) end
    each(fx.up[3])
  end
end

local function del(k) redis.call('DEL', k) end

-- Lead mode: check the preconditions of an op and compute its effects. Returns nil, code,
-- message when the op is refused.
local function plan(op, h, seq_s, fx)
  local kind, path = op[1], op[2]
  if kind == 'noop' then return true end
  if kind == 'own' then
    -- {'own', table epoch, ranges, cluster, fenced}: never back to an older table; one table, one
    -- answer per cluster; another cluster's record (copied from a split's source) is replaced
    -- only by a newer table.
    local same = (op[4] or '') == own_cluster
    if op[2] < own_epoch or (op[2] == own_epoch and not same and own_text) then
      return nil, 'STALE', 'ownership is at table epoch ' .. own_epoch .. ', not ' .. op[2]
    end
    if op[2] == own_epoch and same and own_text and op[3] ~= own_text then
      return nil, 'ERR', 'table epoch ' .. own_epoch .. ' already gave ranges ' .. tostring(own_text)
    end
    return true
  end
  local meta_key = 'f:' .. h .. ':' .. path
  if kind == 'put' then
    -- {'put', path, must_exist, etag, ctype, mtime, size, chunk...}
    if op[3] == 1 and redis.call('EXISTS', meta_key) == 0 then
      return nil, 'NOTFOUND', 'no such file ' .. path
    end
    fx.old = old_version(meta_key)
    local nchunks = #op - 7
    local csize = 0
    if nchunks > 0 then csize = string.len(op[8]) end
    -- Chunk keys name the hash and the (epoch, seq) that wrote them, never just a seq: after
    -- a split both clusters go on from the same seq, each in its own ranges.
    local blob = 'c:' .. h .. ':' .. lead_epoch_s .. '.' .. seq_s .. ':'
    fx.meta = {size = tostring(op[7]), etag = op[4], ctype = op[5], mtime = tostring(op[6]),
               blob = blob, chunks = istr(nchunks), csize = tostring(csize)}
  elseif kind == 'del' then
    if redis.call('EXISTS', meta_key) == 0 then return nil, 'NOTFOUND', 'no such file ' .. path end
    fx.old = old_version(meta_key)
  elseif kind == 'part' then
    -- {'part', path, upload, index, etag, data}: never rewrite the bytes of a committed version.
    if redis.call('HGET', meta_key, 'upset') == 'up:' .. h .. ':' .. path .. '\n' .. op[3] then
      return nil, 'EXISTS', 'upload ' .. op[3] .. ' of ' .. path .. ' is committed; use a new upload id'
    end
  elseif kind == 'commit' then
    -- {'commit', path, upload, parts, ctype, mtime}
    local upset = 'up:' .. h .. ':' .. path .. '\n' .. op[3]
    local prefix = 'u:' .. h .. ':' .. path .. '\n' .. op[3] .. '\n'
    if redis.call('HGET', meta_key, 'upset') == upset then
      return nil, 'EXISTS', 'upload ' .. op[3] .. ' of ' .. path .. ' is already committed'
    end
    local n = op[4]
    local size, csize, tags = 0, 0, {}
    for i = 0, n - 1 do
      local tag = redis.call('HGET', upset, tostring(i))
      if not tag then return nil, 'ERR', 'upload ' .. op[3] .. ' has no part ' .. i end
      tags[#tags + 1] = tag
    end
    for i = 0, n - 1 do
      local len = redis.call('STRLEN', prefix .. i)
      if i == 0 then csize = len end
      if i < n - 1 and len ~= csize then
        return nil, 'ERR', 'part ' .. i .. ' has ' .. len .. ' bytes; all parts but the last must have ' .. csize
      end
      size = size + len
    end
    local extra = redis.call('HLEN', upset) - n
    if extra > 0 then return nil, 'ERR', 'upload ' .. op[3] .. ' has ' .. extra .. ' part(s) beyond ' .. n end
    fx.old = old_version(meta_key)
    fx.meta = {size = tostring(size), etag = redis.sha1hex(table.concat(tags)) .. '-' .. n,
               ctype = op[5], mtime = tostring(op[6]), blob = prefix, chunks = istr(n),
               csize = tostring(csize), upset = upset}
  elseif kind == 'abort' then
    local upset = 'up:' .. h .. ':' .. path .. '\n' .. op[3]
    local prefix = 'u:' .. h .. ':' .. path .. '\n' .. op[3] .. '\n'
    if redis.call('HGET', meta_key, 'upset') == upset then
      return nil, 'ERR', 'upload ' .. op[3] .. ' is committed; DELETE the file instead'
    end
    local idx = redis.call('HKEYS', upset)
    if #idx == 0 then return nil, 'NOTFOUND', 'no such upload ' .. op[3] end
    fx.up = {prefix, idx, upset}
  elseif kind ~= 'noop' then
    return nil, 'ERR', 'unknown op ' .. tostring(kind)
  end
  return true
end

-- Apply an op's effects (both modes); `seq_s` is the entry's seq as a string.
local function effect(op, h, seq_s, fx)
  local kind, path = op[1], op[2]
  if kind == 'noop' then return end
  if kind == 'own' then
    own_epoch, own_text, own_cluster = op[2], op[3], op[4] or ''
    -- fenced (1): a split's fence before its commit point; replicas keep the keys outside.
    redis.call('HSET', 'own', 'epoch', own_epoch, 'ranges', own_text, 'cluster', own_cluster,
      'fenced', op[5] or 0)
    owned = parse_ranges(own_text, own_cluster)
    return
  end
  local meta_key = 'f:' .. h .. ':' .. path
  local function set_meta(m)
    redis.call('HSET', meta_key, 'size', m.size, 'etag', m.etag, 'type', m.ctype, 'mtime', m.mtime,
      'seq', seq_s, 'blob', m.blob, 'chunks', m.chunks, 'csize', m.csize, 'upset', m.upset or '')
  end
  if kind == 'put' then
    deleted_keys(fx, del)
    for i = 8, #op do redis.call('SET', fx.meta.blob .. istr(i - 8), op[i]) end
    set_meta(fx.meta)
    index_add(h, path)
  elseif kind == 'del' then
    deleted_keys(fx, del)
    redis.call('DEL', meta_key)
    index_remove(h, path)
  elseif kind == 'part' then
    redis.call('SET', 'u:' .. h .. ':' .. path .. '\n' .. op[3] .. '\n' .. op[4], op[6])
    redis.call('HSET', 'up:' .. h .. ':' .. path .. '\n' .. op[3], op[4], op[5])
  elseif kind == 'commit' then
    local upset = 'up:' .. h .. ':' .. path .. '\n' .. op[3]
    local prefix = 'u:' .. h .. ':' .. path .. '\n' .. op[3] .. '\n'
    deleted_keys(fx, function(k)
      -- Replacing a file with a new upload must not delete the new upload's parts.
      if string.sub(k, 1, #prefix) ~= prefix and k ~= upset then redis.call('DEL', k) end
    end)
    set_meta(fx.meta)
    index_add(h, path)
  elseif kind == 'abort' then
    deleted_keys(fx, del)
  end
end

-- Record a tagged request's result in its session (both modes, from the effects). The common
-- case costs one HSET; every SESSION_STEP requests the results beyond the window are dropped and
-- the session's last use is refreshed (so eviction is least-recently-used to within a step).
local function record_session(seq, fx)
  if not fx.s then return end
  local key = 'sess:' .. fx.s
  -- fx.q is the request's seq in its session: a string (a number in entries of older nodes).
  local q = tonumber(fx.q)
  redis.call('HSET', key, 'last', fx.q, 'r' .. fx.q, fx.r)
  if fx.new == 1 or q % SESSION_STEP == 0 then
    redis.call('ZADD', 'sess', seq, fx.s)
  end
  if q % SESSION_STEP == 0 and q > SESSION_WINDOW then
    local old = {}
    for i = math.max(1, q - SESSION_WINDOW - SESSION_STEP + 1), q - SESSION_WINDOW do
      old[#old + 1] = 'r' .. i
    end
    redis.call('HDEL', key, unpack(old))
  end
  for _, gone in ipairs(fx.ev or {}) do
    redis.call('ZREM', 'sess', gone)
    redis.call('DEL', 'sess:' .. gone)
  end
end

local function append_log(seq, epoch, epoch_s, op_blob, fx_blob)
  if first == 0 then
    first = seq
    baseepoch = appliedepoch
  end
  applied, appliedepoch = seq, epoch
  redis.call('RPUSH', 'log', epoch_s, op_blob, fx_blob)
  bytes = bytes + string.len(op_blob) + string.len(fx_blob)
end

-- Drop the oldest entries beyond the log's capacity and size cap, once per batch (the script is
-- atomic, so nobody sees the log over its bounds): one LPOP for the whole excess in entries,
-- then one per entry while the bytes are over the cap (always keeping the newest entry).
local function trim_log()
  if first == 0 then return end
  local len = applied - first + 1
  local function dropped(items)
    for j = 1, #items, 3 do
      bytes = bytes - string.len(items[j + 1]) - string.len(items[j + 2])
      baseepoch = tonumber(items[j])
      first = first + 1
      len = len - 1
    end
  end
  if len > cap then dropped(redis.call('LPOP', 'log', (len - cap) * 3)) end
  while bytes > maxbytes and len > 1 do dropped(redis.call('LPOP', 'log', 3)) end
end

local function lead_one(op_blob, sess, cseq_s)
  local seq = applied + 1
  local seq_s = tostring(seq)
  local cseq = tonumber(cseq_s)
  local op = cmsgpack.unpack(op_blob)
  local h = table.remove(op, 2)
  local fx = {}
  if sess ~= '' then
    local key = 'sess:' .. sess
    local last = tonumber(redis.call('HGET', key, 'last') or '0')
    if cseq <= last then
      local r = redis.call('HGET', key, 'r' .. cseq)
      if r then return {'again', r} end
      return {'err', 'ERR', 'request ' .. cseq .. ' of session ' .. sess .. ' is too old to answer again', applied}
    end
    if cseq > last + 1 then
      return {'err', 'TRYAGAIN', 'out of order: session ' .. sess .. ' expects request ' .. (last + 1) .. ', got ' .. cseq, applied}
    end
    fx.s, fx.q = sess, cseq_s
    if last == 0 then
      fx.new = 1
      if redis.call('ZCARD', 'sess') >= MAX_SESSIONS then
        fx.ev = redis.call('ZRANGE', 'sess', 0, 0)
      end
    end
  end
  -- Checked after the session (a retry of an applied write gets its first outcome) and never
  -- logged: a MOVED write was not applied here and never will be, so the router may send it,
  -- and every later write of its session, to the new owner.
  if not owns(h) then
    return {'err', 'MOVED', own_epoch .. ' ' .. tonumber(h, 16), applied}
  end
  local ok, code, msg = plan(op, h, seq_s, fx)
  if not ok then
    if sess == '' then return {'err', code, msg, applied} end
    -- A tagged refusal is logged (no data change), so the session advances everywhere.
    fx.fail = code .. ' ' .. msg
    fx.old, fx.up, fx.meta = nil, nil, nil
    fx.r = 'e' .. fx.fail
    local fx_blob = cmsgpack.pack(fx)
    record_session(seq, fx)
    append_log(seq, lead_epoch, lead_epoch_s, op_blob, fx_blob)
    return {'fail', seq, fx_blob, code, msg}
  end
  fx.r = 'o' .. seq_s
  effect(op, h, seq_s, fx)
  record_session(seq, fx)
  local fx_blob = cmsgpack.pack(fx)
  append_log(seq, lead_epoch, lead_epoch_s, op_blob, fx_blob)
  return {'ok', seq, fx_blob}
end

local function replay_one(seq_s, epoch_s, op_blob, fx_blob)
  local seq, epoch = tonumber(seq_s), tonumber(epoch_s)
  if seq <= applied then return {'dup', applied} end
  if seq ~= applied + 1 then return {'gap', applied} end
  local op = cmsgpack.unpack(op_blob)
  local h = table.remove(op, 2)
  local fx = cmsgpack.unpack(fx_blob)
  if not fx.fail then effect(op, h, seq_s, fx) end
  record_session(seq, fx)
  append_log(seq, epoch, epoch_s, op_blob, fx_blob)
  return {'ok', seq}
end

local results = {}
for i = 6, #ARGV, 6 do
  local r
  if mode == 'lead' then
    r = lead_one(ARGV[i + 2], ARGV[i + 4], ARGV[i + 5])
  else
    r = replay_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
  end
  results[#results + 1] = r
  if r[1] == 'gap' then break end
end
trim_log()
redis.call('HSET', 'meta', 'applied', applied, 'appliedepoch', appliedepoch, 'logfirst', first,
  'logbytes', bytes, 'baseepoch', baseepoch)
return results
