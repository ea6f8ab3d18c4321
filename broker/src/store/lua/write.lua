-- The compact layout's write of one host's batch (broker/src/store/keys.rs), atomic.
-- KEYS: 1 open-window index, 2 name lists, 3 latest, 4 host hash,
--       then per window: its rows hash, its chunk.
-- ARGV: 1 now (ms), 2 retention (ms), 3 window width (ms), 4 name lists, 5 windows,
--       then per name list: id, body ('' when the broker believes it stored),
--       then the newest snapshot: timestamp, value ('' for none),
--       then per window: start, expire-at (ms), rows, then per row: timestamp, row.
-- Returns {-1} when a name list the broker did not send is missing (nothing written), else
-- {per row: 1 new, 0 duplicate, 2 its window is closed (the broker merges it into the chunk);
--  the open-window index as start, last-write pairs}.
local nlists = tonumber(ARGV[4])
local nwindows = tonumber(ARGV[5])
local retention = tonumber(ARGV[2])
local width = tonumber(ARGV[3])
local a = 6
for _ = 1, nlists do
  if ARGV[a + 1] == '' and redis.call('HEXISTS', KEYS[2], ARGV[a]) == 0 then
    return {-1}
  end
  a = a + 2
end
a = 6
for _ = 1, nlists do
  if ARGV[a + 1] ~= '' then
    redis.call('HSETNX', KEYS[2], ARGV[a], ARGV[a + 1])
  end
  a = a + 2
end
redis.call('PEXPIRE', KEYS[2], retention + 2 * width)
local latest_ts, latest = ARGV[a], ARGV[a + 1]
a = a + 2
local out = {}
for i = 1, nwindows do
  local start, expire_at, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local rows, chunk = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local closed = redis.call('EXISTS', chunk) == 1
  local added = 0
  for _ = 1, n do
    if closed then
      out[#out + 1] = 2
    else
      local r = redis.call('HSETNX', rows, ARGV[a], ARGV[a + 1])
      out[#out + 1] = r
      added = added + r
    end
    a = a + 2
  end
  if added > 0 then
    redis.call('PEXPIREAT', rows, expire_at)
    redis.call('ZADD', KEYS[1], ARGV[1], start)
  end
end
if latest ~= '' then
  local cur = redis.call('GET', KEYS[3])
  local cur_ts = cur and tonumber(string.match(cur, '^(%-?%d+):'))
  if not cur_ts or cur_ts < tonumber(latest_ts) then
    redis.call('SET', KEYS[3], latest_ts .. ':' .. latest, 'PX', retention)
  end
end
redis.call('HSET', KEYS[4], 'last_seen', ARGV[1])
redis.call('PEXPIRE', KEYS[4], retention)
redis.call('PEXPIRE', KEYS[1], retention + 2 * width)
return {out, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
