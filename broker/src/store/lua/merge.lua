-- Replaces a chunk of the compact layout with one holding late rows too, provided it is still
-- the chunk the broker read (same CRC): compare and set.
-- KEYS: 1 chunk. ARGV: 1 the CRC bytes read, 2 the new chunk.
-- Returns 1 replaced, 0 the chunk changed or expired meanwhile.
if redis.call('GETRANGE', KEYS[1], 4, 7) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
