"""The Redis engine's server-side Lua scripts (text only: rt/engine/redis.py runs them).

Keys, under the engine's prefix P (``rt:`` by default):

    P epoch          string: the epoch of every topic; made anew when Redis has lost it
    P m:<topic>      hash: seq, ts (ms) and state (JSON text) of the topic
    P l:<topic>      stream: the topic's log, entry id <seq>-0, fields k (p|e), t (ts), d (data)
    P c:<topic>      pub/sub channel (not a key): each update, as the JSON text
                     [epoch, seq, ts, kind, data]

One PUBLISH call assigns the seqs, merges the patches into the state, appends to the logs
(trimmed to the history length) and publishes to the channels, atomically: Redis runs a
script as one step, so two nodes publishing to one topic at once still get consecutive seqs.

JSON stays text inside Redis. The engine sends compact JSON (no whitespace, as Python's
``json.dumps(..., separators=(",", ":"))`` writes it), and the merge below parses objects only
as deep as a patch reaches, copying every other value (numbers, strings, arrays) as the text
it came as: no number loses digits and no empty array turns into an object, as they would
through Lua's cjson. Keys are compared as their JSON text, which one encoder makes canonical.
"""

from __future__ import annotations

_JSON_MERGE = r"""
-- The index just after the JSON string that starts at i.
local function skip_string(s, i)
  local j = i + 1
  while true do
    local q = string.find(s, '["\\]', j)
    if string.byte(s, q) == 34 then return q + 1 end  -- '"'
    j = q + 2  -- a backslash: skip the character it escapes
  end
end

-- The index just after the JSON value that starts at i.
local function skip_value(s, i)
  local c = string.byte(s, i)
  if c == 34 then return skip_string(s, i) end
  if c == 123 or c == 91 then  -- '{' or '['
    local depth, j = 0, i
    while true do
      local k = string.find(s, '["{}%[%]]', j)
      local ch = string.byte(s, k)
      if ch == 34 then
        j = skip_string(s, k)
      else
        if ch == 123 or ch == 91 then depth = depth + 1 else depth = depth - 1 end
        j = k + 1
        if depth == 0 then return j end
      end
    end
  end
  return string.find(s, '[,}%]]', i) or (#s + 1)
end

-- An object's members as {keys = {key text, ...}, vals = {[key text] = value text}}.
local function parse_object(s)
  local obj = {keys = {}, vals = {}}
  if s == '{}' then return obj end
  local j = 2
  while true do
    local key_end = skip_string(s, j)
    local key = string.sub(s, j, key_end - 1)
    local value_end = skip_value(s, key_end + 1)
    if obj.vals[key] == nil then obj.keys[#obj.keys + 1] = key end
    obj.vals[key] = string.sub(s, key_end + 1, value_end - 1)
    if string.byte(s, value_end) == 125 then return obj end  -- '}'
    j = value_end + 1
  end
end

-- RFC 7396: the text of target (any JSON text, or nil) merged with the object text patch.
local function merge(target, patch)
  local t
  if target and string.byte(target, 1) == 123 then
    t = parse_object(target)
  else
    t = {keys = {}, vals = {}}
  end
  local p = parse_object(patch)
  for _, key in ipairs(p.keys) do
    local value = p.vals[key]
    if value == 'null' then
      t.vals[key] = nil
    else
      if t.vals[key] == nil then t.keys[#t.keys + 1] = key end
      if string.byte(value, 1) == 123 then
        t.vals[key] = merge(t.vals[key], value)
      else
        t.vals[key] = value
      end
    end
  end
  local parts, seen = {}, {}
  for _, key in ipairs(t.keys) do
    local value = t.vals[key]
    if value ~= nil and not seen[key] then
      seen[key] = true
      parts[#parts + 1] = key .. ':' .. value
    end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end
"""

_ENSURE_EPOCH = r"""
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
"""

#: KEYS: epoch, then per item its meta hash and log stream. ARGV: an epoch to use if Redis
#: has none, the history length, then per item: channel, kind (p|e), ts, data (JSON text).
#: Returns {epoch, seq of each item...}.
PUBLISH = (
    _JSON_MERGE
    + _ENSURE_EPOCH
    + r"""
local history = ARGV[2]
local out = {epoch}
local a = 3
for k = 2, #KEYS, 2 do
  local meta, log = KEYS[k], KEYS[k + 1]
  local channel, kind, ts, data = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  a = a + 4
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  if kind == 'p' then
    local state = redis.call('HGET', meta, 'state')
    redis.call('HSET', meta, 'ts', ts, 'state', merge(state or nil, data))
  else
    redis.call('HSET', meta, 'ts', ts)
  end
  redis.call('XADD', log, 'MAXLEN', history, seq .. '-0', 'k', kind, 't', ts, 'd', data)
  redis.call('PUBLISH', channel,
    '["' .. epoch .. '",' .. seq .. ',' .. ts .. ',"' .. kind .. '",' .. data .. ']')
  out[#out + 1] = seq
end
return out
"""
)

#: KEYS: epoch, the topic's meta hash. ARGV: an epoch to use if Redis has none.
#: Returns {epoch, seq, ts, state}, seq 0 and state {} for a topic never published.
SNAPSHOT = (
    _ENSURE_EPOCH
    + r"""
local m = redis.call('HMGET', KEYS[2], 'seq', 'ts', 'state')
return {epoch, m[1] or '0', m[2] or '0', m[3] or '{}'}
"""
)

#: KEYS: epoch, the topic's meta hash, its log. ARGV: an epoch to use if Redis has none,
#: since_seq, limit. Returns {epoch, first seq held (0: all wanted are held), entries}, each
#: entry {id, {field, value, ...}}.
UPDATES = (
    _ENSURE_EPOCH
    + r"""
local since = tonumber(ARGV[2])
local seq = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if since >= seq then return {epoch, 0, {}} end
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
local first_seq = seq + 1
if first[1] then first_seq = tonumber(string.match(first[1][1], '^(%d+)')) end
if since + 1 < first_seq then return {epoch, first_seq, {}} end
return {epoch, 0, redis.call('XRANGE', KEYS[3], (since + 1) .. '-0', '+', 'COUNT', ARGV[3])}
"""
)
