-- sluice's shared limiter: reserves starts for one process of a job, on
-- Redis's clock, with the exact GCRA arithmetic of crates/sluice/src/gcra.rs
-- (Gcra::earliest, then Gcra::charge), all or nothing across dimensions.
--
-- KEYS[1]        the job's pauses (hash: origin -> until, microseconds)
-- KEYS[2]        the job's closed origins (hash: origin -> reason)
-- KEYS[3]        an origin's learned limits to publish (see ARGV[8..12])
-- KEYS[4]        the learned limits of the origin the starts are for: when
--                this hash holds a period, it is one more dimension (cost 1)
-- KEYS[5..]      one hash per dimension (global rate, budget, an origin's rate):
--                epoch (microseconds, Redis time of its first use) and tat
--                (scaled units since epoch: nanoseconds x count); a learned
--                hash holds its period, count and burst too
-- ARGV[1]        now in microseconds, or "" for Redis's clock (TIME)
-- ARGV[2]        horizon: reserve only starts due within it (nanoseconds)
-- ARGV[3]        how many starts are wanted (0: only read pauses and closures)
-- ARGV[4]        an origin to pause, or ""
-- ARGV[5]        its pause in microseconds from now
-- ARGV[6]        an origin to close, or ""
-- ARGV[7]        why it closed
-- ARGV[8..12]    learned limits to publish to KEYS[3] (ARGV[8] "": none):
--                period, count, burst, the cells its server's last answer
--                proves are left now (a bound: the cell is only ever
--                tightened to it), and how long they live (seconds)
-- ARGV[13]       lead: reserve no start earlier than this after now
--                (nanoseconds): the time a reply takes to reach the
--                process, so no start is due before its grant arrives
-- ARGV[14..]     per dimension: period, count, burst, cost (cells per start)
--
-- Returns { now (microseconds), { offset of each start reserved, in
-- nanoseconds from now }, offset of the first start not reserved (-1 if
-- all were), { origin, pause left in microseconds, ... }, { origin,
-- reason, ... } }. Numbers stay below 2^53 (Lua's doubles are exact).

local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local horizon = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local lead = tonumber(ARGV[13]) or 0

-- A whole number as text, every digit kept (tostring keeps only 14).
local function whole(x)
  return string.format('%.0f', x)
end

-- ceil(a / b) for whole numbers, exactly.
local function ceil_div(a, b)
  local q = math.floor(a / b)
  if q * b < a then q = q + 1 end
  if q > 0 and (q - 1) * b >= a then q = q - 1 end
  return q
end

-- Learned limits published: the shape is replaced, the cell's time kept,
-- and the cell tightened to what the server said is left.
if ARGV[8] ~= '' then
  local stored = redis.call('HMGET', KEYS[3], 'epoch', 'tat')
  local epoch = tonumber(stored[1]) or now
  local tat = tonumber(stored[2]) or 0
  local period, count, burst = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
  local short = burst - tonumber(ARGV[11])
  if short > 0 then
    tat = math.max(tat, (now - epoch) * 1000 * count + short * period)
  end
  redis.call('HSET', KEYS[3], 'period', ARGV[8], 'count', ARGV[9], 'burst', ARGV[10],
    'epoch', whole(epoch), 'tat', whole(tat))
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[12]))
end

local dims = {}
for d = 5, #KEYS do
  local base = 14 + (d - 5) * 4
  local stored = redis.call('HMGET', KEYS[d], 'epoch', 'tat')
  dims[#dims + 1] = {
    key = KEYS[d],
    period = tonumber(ARGV[base]),
    count = tonumber(ARGV[base + 1]),
    burst = tonumber(ARGV[base + 2]),
    cost = tonumber(ARGV[base + 3]),
    epoch = tonumber(stored[1]) or now,
    tat = tonumber(stored[2]) or 0,
  }
end
local learned = redis.call('HMGET', KEYS[4], 'period', 'count', 'burst', 'epoch', 'tat')
if wanted > 0 and learned[1] then
  dims[#dims + 1] = {
    key = KEYS[4],
    learned = true,
    period = tonumber(learned[1]),
    count = tonumber(learned[2]),
    burst = tonumber(learned[3]),
    cost = 1,
    epoch = tonumber(learned[4]),
    tat = tonumber(learned[5]),
  }
end

-- Each dimension's time runs from its own epoch, in nanoseconds.
local offsets = {}
local missed = -1
for _ = 1, wanted do
  local at = {}
  local latest = lead
  for i, dim in ipairs(dims) do
    local rel_now = (now - dim.epoch) * 1000
    local needed = dim.tat + dim.cost * dim.period - dim.burst * dim.period
    local t = rel_now + lead
    if needed > 0 then t = math.max(t, ceil_div(needed, dim.count)) end
    at[i] = t
    latest = math.max(latest, t - rel_now)
  end
  if latest > horizon then
    missed = latest
    break
  end
  for i, dim in ipairs(dims) do
    local rel_now = (now - dim.epoch) * 1000
    local when = (rel_now + latest) * dim.count
    dim.tat = math.max(dim.tat, when) + dim.cost * dim.period
  end
  offsets[#offsets + 1] = latest
end
-- Only a reservation changes a dimension (a poll must not set its epoch).
-- (A learned cell keeps the expiry its last publication set.)
for _, dim in ipairs(wanted > 0 and dims or {}) do
  redis.call('HSET', dim.key, 'epoch', whole(dim.epoch), 'tat', whole(dim.tat))
  if not dim.learned then redis.call('EXPIRE', dim.key, 86400 * 7) end
end

if ARGV[4] ~= '' then
  local until_us = now + tonumber(ARGV[5])
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[4])) or 0
  if until_us > old then redis.call('HSET', KEYS[1], ARGV[4], whole(until_us)) end
  redis.call('EXPIRE', KEYS[1], 86400 * 7)
end
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[6], ARGV[7])
  redis.call('EXPIRE', KEYS[2], 86400 * 7)
end

local pauses = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local left = tonumber(all[i + 1]) - now
  if left > 0 then
    pauses[#pauses + 1] = all[i]
    pauses[#pauses + 1] = whole(left)
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end

return { now, offsets, missed, pauses, redis.call('HGETALL', KEYS[2]) }
