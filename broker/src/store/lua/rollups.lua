-- The rollup part of chunks of the compact layout (broker/src/store/chunk.rs): per key its
-- first 16 bytes and rollup section (GETRANGE), false for a missing key; the rows' sections,
-- most of a chunk, stay in Redis.
-- KEYS: the chunks (one host's: one slot).
local out = {}
for i, k in ipairs(KEYS) do
  local head = redis.call('GETRANGE', k, 8, 11)
  if #head == 4 then
    local len = struct.unpack('<I4', head)
    out[i] = redis.call('GETRANGE', k, 0, 15 + len)
  else
    out[i] = false
  end
end
return out
