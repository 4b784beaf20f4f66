/**
 * The Lua scripts of the Redis cluster bus. Each runs atomically in Redis, so that two nodes acting on
 * the same keys (a login on two nodes, two peers declaring each other at once) see each other's effect.
 *
 * Keys: tb:nodes (set of node ids), tb:alive:<node> (heartbeat, expires), tb:at:<key> (the node a key
 * is connected to), tb:d:<key> (its declared peers), tb:nk:<node> (keys connected there), tb:cnt:<node>
 * (hash of per-address counts: c|<bucket> connections, d|<bucket> declared peers), tb:mv:<key> (moving:
 * hold its envelopes), tb:held:<key> (held envelopes), tb:heldwin (held in the current window), tb:late:<node>
 * (when a node's heartbeat was first seen missing while it was still subscribed), tb:reaping (nodes taken
 * for dead whose keys are still being taken offline, a batch at a time).
 * Channel tb:n:<node>: messages for a node.
 *
 * A node is live while its heartbeat key exists or its subscriber connection is open (PUBSUB NUMSUB of
 * its channel): a process that dies loses its connections at once, while one whose event loop stalls
 * past the heartbeat's TTL keeps them. Only a node with neither is taken for dead at once (REAP).
 */

const LIVE = `
local function live(n)
  return redis.call('EXISTS', 'tb:alive:' .. n) == 1 or redis.call('PUBSUB', 'NUMSUB', 'tb:n:' .. n)[2] > 0
end
`;

/** Sums a per-address count over the live nodes. */
const SUM_ALIVE = `${LIVE}
local function sum_alive(field)
  local total = 0
  for _, n in ipairs(redis.call('SMEMBERS', 'tb:nodes')) do
    if live(n) then
      total = total + tonumber(redis.call('HGET', 'tb:cnt:' .. n, field) or '0')
    end
  end
  return total
end
`;

/** Tells the node of `to` (if `to` is online and declares `peer`) that `peer` came or went. */
const ANNOUNCE = `
local function announce(to, peer, online)
  local at = redis.call('GET', 'tb:at:' .. to)
  if at and redis.call('SISMEMBER', 'tb:d:' .. to, peer) == 1 then
    redis.call('PUBLISH', 'tb:n:' .. at, cjson.encode({t = 'p', to = to, peer = peer, on = online}))
    return true
  end
  return false
end
`;

/**
 * ARGV: me, key, bucket, cap. Returns 1 if claimed, 0 over the per-address cap. A key taken from
 * another node goes offline for its peers here, in the same step, so that the new connection's
 * declaration (online) cannot overtake it. The connection it replaces does not count against it (as
 * on one node): it is closed with 4010 there, or gone with its node, whose counts would otherwise hold
 * the address's clients out until that node's heartbeat expires.
 */
export const CLAIM = `${SUM_ALIVE}${ANNOUNCE}
local me, key, bucket, cap = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local prev = redis.call('GET', 'tb:at:' .. key)
local replacing = 0
if prev and prev ~= me then replacing = 1 end
if sum_alive('c|' .. bucket) + 1 - replacing > cap then return 0 end
redis.call('HINCRBY', 'tb:cnt:' .. me, 'c|' .. bucket, 1)
redis.call('SET', 'tb:at:' .. key, me)
redis.call('SADD', 'tb:nk:' .. me, key)
if prev and prev ~= me then
  for _, p in ipairs(redis.call('SMEMBERS', 'tb:d:' .. key)) do announce(p, key, false) end
  redis.call('SREM', 'tb:nk:' .. prev, key)
  redis.call('PUBLISH', 'tb:n:' .. prev, cjson.encode({t = 'r', key = key}))
end
return 1
`;

/**
 * ARGV: me, key, bucket, cap, reset, growth, nAdded, added..., removed...
 * Returns {1, online, offline, held} or {0} over the per-address cap. A connection's first declaration
 * (reset) also takes the envelopes held for the key while it moved (one script a login fewer).
 */
export const DECLARE = `${SUM_ALIVE}${ANNOUNCE}
local me, key, bucket, cap = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local reset, growth, nAdded = ARGV[5] == '1', tonumber(ARGV[6]), tonumber(ARGV[7])
if growth > 0 and sum_alive('d|' .. bucket) + growth > cap then return {0} end
redis.call('HINCRBY', 'tb:cnt:' .. me, 'd|' .. bucket, growth)
local dkey = 'tb:d:' .. key
local online, offline = {}, {}
for i = 8 + nAdded, #ARGV do
  if announce(ARGV[i], key, false) then offline[#offline + 1] = ARGV[i] end
  redis.call('SREM', dkey, ARGV[i])
end
if reset then redis.call('DEL', dkey) end
for i = 8, 7 + nAdded do redis.call('SADD', dkey, ARGV[i]) end
redis.call('PERSIST', dkey)
for i = 8, 7 + nAdded do
  if announce(ARGV[i], key, true) then online[#online + 1] = ARGV[i] end
end
local held = {}
if reset then
  held = redis.call('LRANGE', 'tb:held:' .. key, 0, -1)
  redis.call('DEL', 'tb:held:' .. key, 'tb:mv:' .. key)
end
return {1, online, offline, held}
`;

/** ARGV: me, key, bucket, declaredCount, moving, declared... */
export const LEAVE = `${ANNOUNCE}
local me, key, bucket, count, moving = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1'
local cnt = 'tb:cnt:' .. me
if redis.call('HINCRBY', cnt, 'c|' .. bucket, -1) <= 0 then redis.call('HDEL', cnt, 'c|' .. bucket) end
if count > 0 and redis.call('HINCRBY', cnt, 'd|' .. bucket, -count) <= 0 then
  redis.call('HDEL', cnt, 'd|' .. bucket)
end
if moving then return 0 end
-- Not the owner: the key logged in elsewhere, whose claim already told its peers.
if redis.call('GET', 'tb:at:' .. key) == me then
  for i = 6, #ARGV do announce(ARGV[i], key, false) end
  redis.call('DEL', 'tb:at:' .. key, 'tb:d:' .. key)
  redis.call('SREM', 'tb:nk:' .. me, key)
end
return 1
`;

/**
 * ARGV: self, to, from, payload, checkMutual, holdMs, heldPerKey, heldPerWindow.
 * Returns 1 sent, 2 held, 0 undeliverable.
 */
export const ROUTE = `
local self, to, from, payload = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if ARGV[5] == '1' and redis.call('SISMEMBER', 'tb:d:' .. to, from) == 0 then return 0 end
local at = redis.call('GET', 'tb:at:' .. to)
-- Sent if its node's subscriber took it: a stalled node reads it when its loop turns again, a dead
-- node has no subscriber (its heartbeat may not have expired yet).
if at and at ~= self and redis.call('PUBLISH', 'tb:n:' .. at, payload) > 0 then return 1 end
if redis.call('EXISTS', 'tb:mv:' .. to) == 1 then
  local holdMs = tonumber(ARGV[6])
  local window = redis.call('INCR', 'tb:heldwin')
  if window == 1 then redis.call('PEXPIRE', 'tb:heldwin', holdMs) end
  if window > tonumber(ARGV[8]) then return 0 end
  redis.call('RPUSH', 'tb:held:' .. to, payload)
  redis.call('LTRIM', 'tb:held:' .. to, -tonumber(ARGV[7]), -1)
  redis.call('PEXPIRE', 'tb:held:' .. to, holdMs)
  return 2
end
return 0
`;

/**
 * ARGV: me, holdMs, graceMs, leaving, batch. Returns {dead, more}. Nodes whose heartbeat expired and
 * whose subscriber is gone (the process died), or whose heartbeat has been missing for graceMs though
 * still subscribed (a frozen process or a host cut off), leave tb:nodes for tb:reaping and their counts
 * vanish; then at most `batch` keys of the nodes in tb:reaping go offline (peers told), so that one
 * script does not hold Redis for long (14,000 keys in one took 1.4-2.8 s, and every node's heartbeat
 * waited behind it); more = 1: call again. A moving key keeps its declarations for the hold time.
 * leaving = '1': `me` is closing and goes too. A reaped node's heartbeat takes it out of tb:reaping.
 */
export const REAP = `${ANNOUNCE}
local me, holdMs, graceMs, leaving = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local budget = tonumber(ARGV[5])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local dead = {}
for _, n in ipairs(redis.call('SMEMBERS', 'tb:nodes')) do
  local gone = false
  if n == me then gone = leaving
  elseif redis.call('EXISTS', 'tb:alive:' .. n) == 0 then
    if redis.call('PUBSUB', 'NUMSUB', 'tb:n:' .. n)[2] == 0 then gone = true
    else
      -- Slow, not dead (yet): its heartbeat is late but its process holds its connection.
      local since = tonumber(redis.call('GET', 'tb:late:' .. n) or '')
      if not since then
        redis.call('SET', 'tb:late:' .. n, now, 'PX', graceMs * 2)
      elseif now - since >= graceMs then gone = true end
    end
  end
  if gone then
    redis.call('DEL', 'tb:cnt:' .. n, 'tb:late:' .. n)
    redis.call('SREM', 'tb:nodes', n)
    redis.call('SADD', 'tb:reaping', n)
    dead[#dead + 1] = n
  end
end
for _, n in ipairs(redis.call('SMEMBERS', 'tb:reaping')) do
  if budget <= 0 then break end
  local keys = redis.call('SPOP', 'tb:nk:' .. n, budget)
  budget = budget - #keys
  for _, k in ipairs(keys) do
    if redis.call('GET', 'tb:at:' .. k) == n then
      for _, p in ipairs(redis.call('SMEMBERS', 'tb:d:' .. k)) do
        if redis.call('SISMEMBER', 'tb:d:' .. p, k) == 1 then announce(p, k, false) end
      end
      redis.call('DEL', 'tb:at:' .. k)
      if redis.call('EXISTS', 'tb:mv:' .. k) == 1 then redis.call('PEXPIRE', 'tb:d:' .. k, holdMs)
      else redis.call('DEL', 'tb:d:' .. k) end
    end
  end
  if redis.call('EXISTS', 'tb:nk:' .. n) == 0 then redis.call('SREM', 'tb:reaping', n) end
end
local more = 0
if redis.call('EXISTS', 'tb:reaping') == 1 then more = 1 end
return {dead, more}
`;

/**
 * ARGV: me, the keys connected here now. Before RESTORE, after the engine came back (empty after a
 * restart, or stale after a blip): this node's counts start again, and keys it recorded that left
 * while the engine was away go offline.
 */
export const PRUNE = `${ANNOUNCE}
local me, here = ARGV[1], {}
for i = 2, #ARGV do here[ARGV[i]] = true end
redis.call('DEL', 'tb:cnt:' .. me)
for _, k in ipairs(redis.call('SMEMBERS', 'tb:nk:' .. me)) do
  if not here[k] and redis.call('GET', 'tb:at:' .. k) == me then
    for _, p in ipairs(redis.call('SMEMBERS', 'tb:d:' .. k)) do announce(p, k, false) end
    redis.call('DEL', 'tb:at:' .. k, 'tb:d:' .. k)
  end
  if not here[k] then redis.call('SREM', 'tb:nk:' .. me, k) end
end
return 1
`;

/** ARGV: key, declared... Returns the declared keys online (on a live node) that declare `key` too. */
export const ONLINE_OF = `${LIVE}
local key, online = ARGV[1], {}
for i = 2, #ARGV do
  local at = redis.call('GET', 'tb:at:' .. ARGV[i])
  if at and live(at) and redis.call('SISMEMBER', 'tb:d:' .. ARGV[i], key) == 1 then
    online[#online + 1] = ARGV[i]
  end
end
return online
`;

/**
 * ARGV: me, nMembers, then per member: key, bucket, nDeclared, declared... (after an engine restart, or
 * this node was taken for dead). Mutual peers connected anywhere are told the key is online: a reap
 * told them it went offline.
 */
export const RESTORE = `${ANNOUNCE}
local me, i = ARGV[1], 3
for _ = 1, tonumber(ARGV[2]) do
  local key, bucket, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  redis.call('SET', 'tb:at:' .. key, me)
  redis.call('SADD', 'tb:nk:' .. me, key)
  redis.call('HINCRBY', 'tb:cnt:' .. me, 'c|' .. bucket, 1)
  redis.call('DEL', 'tb:d:' .. key)
  if n > 0 then
    redis.call('HINCRBY', 'tb:cnt:' .. me, 'd|' .. bucket, n)
    for j = i + 3, i + 2 + n do redis.call('SADD', 'tb:d:' .. key, ARGV[j]) end
    for j = i + 3, i + 2 + n do announce(ARGV[j], key, true) end
  end
  i = i + 3 + n
end
return 1
`;
