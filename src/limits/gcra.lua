-- presignd rate limiter: GCRA over several buckets, all or nothing, in one round trip.
-- The same arithmetic as src/limits/gcra.rs (`admit_all`).
--
-- KEYS[i]          bucket i (its value is the theoretical arrival time, in µs, Redis clock)
-- ARGV[2i-1]       bucket i's emission interval in µs (period / rate)
-- ARGV[2i]         bucket i's tolerance in µs (burst × interval)
--
-- Returns {1, 0, 0} when every bucket admits the request (and all of them are charged), or
-- {0, wait_us, i} when bucket i is the first to refuse (and none is charged); wait_us is how
-- long until every bucket would admit it.
--
-- The time is Redis's own (TIME), so every presignd instance shares one clock. Keys expire at
-- their TAT: an expired bucket and an idle one are the same thing.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
local refused = 0
local wait = 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now then
    tat = now
  end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if allow_at > now then
    if refused == 0 then
      refused = i
    end
    if allow_at - now > wait then
      wait = allow_at - now
    end
  end
  tats[i] = new_tat
end
if refused > 0 then
  return {0, wait, refused}
end
for i = 1, #KEYS do
  local ttl_ms = math.ceil((tats[i] - now) / 1000) + 1
  redis.call('SET', KEYS[i], string.format("%.0f", tats[i]), 'PX', ttl_ms)
end
return {1, 0, 0}
