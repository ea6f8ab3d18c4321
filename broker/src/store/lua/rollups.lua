-- Day rollups of the compact layout (broker/src/store/rollup.rs), only the metrics asked for.
-- KEYS: the day rollups (one per day), then per day the chunk of each of its windows.
-- ARGV: 1 windows a day, then the metric names asked for ('*' ends a prefix; none: all).
-- Returns per day: false when its rollup is missing or was not made from the chunks there now
-- (one was closed or merged into since); else {its first bytes through the index, then per
-- metric asked for: its place in the index (1-based) and its section}.
local per_day = tonumber(ARGV[1])
local ndays = #KEYS / (per_day + 1)
local function wanted(name)
  if #ARGV == 1 then
    return true
  end
  for i = 2, #ARGV do
    local p = ARGV[i]
    if string.sub(p, -1) == '*' then
      if string.sub(name, 1, #p - 1) == string.sub(p, 1, #p - 1) then
        return true
      end
    elseif p == name then
      return true
    end
  end
  return false
end
local out = {}
for d = 1, ndays do
  local day = KEYS[d]
  local head = redis.call('GETRANGE', day, 0, 15)
  local ok = #head == 16 and string.sub(head, 1, 4) == 'RWD1'
  local index_len = 0
  if ok then
    ok = struct.unpack('<I4', head, 5) == per_day
    index_len = struct.unpack('<I4', head, 9)
  end
  if ok then
    local crcs = {}
    for w = 1, per_day do
      local c = redis.call('GETRANGE', KEYS[ndays + (d - 1) * per_day + w], 4, 7)
      if #c ~= 4 then
        c = '\0\0\0\0'
      end
      crcs[w] = c
    end
    ok = redis.call('GETRANGE', day, 16, 16 + 4 * per_day - 1) == table.concat(crcs)
  end
  if not ok then
    out[d] = false
  else
    local index_at = 16 + 4 * per_day
    local prefix = redis.call('GETRANGE', day, 0, index_at + index_len - 1)
    local data_at = index_at + index_len
    local part = { prefix }
    local metrics = struct.unpack('<I4', prefix, index_at + 1)
    local pos = index_at + 5
    for m = 1, metrics do
      local len = struct.unpack('<H', prefix, pos)
      local name = string.sub(prefix, pos + 2, pos + 1 + len)
      local offset = struct.unpack('<I4', prefix, pos + 2 + len + 4)
      local size = struct.unpack('<I4', prefix, pos + 2 + len + 8)
      if wanted(name) then
        part[#part + 1] = m
        part[#part + 1] = redis.call('GETRANGE', day, data_at + offset, data_at + offset + size - 1)
      end
      pos = pos + 2 + len + 16
    end
    out[d] = part
  end
end
return out
