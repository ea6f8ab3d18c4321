-- Closes one open window of the compact layout (broker/src/store/keys.rs), atomic: its rows
-- hash becomes its chunk, provided the rows are still the ones the broker compressed.
-- KEYS: 1 rows hash, 2 chunk, 3 chunk index, 4 open-window index.
-- ARGV: 1 rows compressed, 2 chunk ('' = the rows were merged into the chunk already: only
--       drop them), 3 chunk expire-at (ms), 4 window start, 5 index entries below this are
--       expired.
-- Returns 1 closed, 0 rows changed meanwhile (try again), -2 a chunk exists already.
local n = tonumber(ARGV[1])
if ARGV[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then
  return -2
end
if redis.call('HLEN', KEYS[1]) ~= n then
  return 0
end
if n > 0 and ARGV[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'PXAT', ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[5])
  if redis.call('PEXPIRETIME', KEYS[3]) < tonumber(ARGV[3]) then
    redis.call('PEXPIREAT', KEYS[3], ARGV[3])
  end
end
if n > 0 then
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[4], ARGV[4])
return 1
