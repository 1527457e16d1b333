//! The Lua scripts every change of a cart runs as (EVAL): Redis runs each
//! alone, so its read-check-write never interleaves with another request's.

/// Shared by every script. KEYS[1]: the cart; ARGV[1]: now (ms); ARGV[2]: the
/// idle TTL in seconds (0: none); ARGV[3]: the id of a cart created now;
/// ARGV[4]: its owner, empty for an anonymous cart, which scripts never create
/// (an unknown or expired anonymous cart stays NOT_FOUND).
macro_rules! cart_script {
    ($body:literal) => {
        concat!(
            r"
local cart = KEYS[1]
local now, ttl = ARGV[1], tonumber(ARGV[2])
local function open(key)
  if redis.call('EXISTS', key) == 1 then return true end
  if ARGV[4] == '' then return false end
  redis.call('HSET', key, 'id', ARGV[3], 'user', ARGV[4], 'created', now, 'updated', now, 'seq', 0)
  return true
end
local function touch(key)
  redis.call('HSET', key, 'updated', now)
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end
local function skus(key)
  local found = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if string.sub(field, 1, 2) == 'q:' then found[#found + 1] = string.sub(field, 3) end
  end
  return found
end
local function drop(key, sku)
  return redis.call('HDEL', key, 'q:' .. sku, 'o:' .. sku, 'l:' .. sku)
end
local function reply(status, key)
  return {status, redis.call('PTTL', key), redis.call('HGETALL', key)}
end
local function refuse(status, number)
  return {status, number, {}}
end
",
            $body
        )
    };
}

pub const READ: &str = cart_script!(
    r"
if not open(cart) then return refuse('NOT_FOUND', 0) end
return reply('OK', cart)
"
);

pub const CREATE: &str = cart_script!(
    r"
redis.call('HSET', cart, 'id', ARGV[3], 'user', '', 'created', now, 'updated', now, 'seq', 0)
redis.call('EXPIRE', cart, ttl)
return reply('OK', cart)
"
);

/// ARGV[5]: SKU; ARGV[6]: units to add; ARGV[7]: the line's JSON, kept when the
/// line is new; ARGV[8]: most lines; ARGV[9]: most units per line.
pub const ADD: &str = cart_script!(
    r"
if not open(cart) then return refuse('NOT_FOUND', 0) end
local sku, add = ARGV[5], tonumber(ARGV[6])
local current = tonumber(redis.call('HGET', cart, 'q:' .. sku) or 0)
if current + add > tonumber(ARGV[9]) then return refuse('TOO_MANY_UNITS', current + add) end
if current == 0 then
  local lines = #skus(cart)
  if lines >= tonumber(ARGV[8]) then return refuse('CART_FULL', lines + 1) end
  local seq = redis.call('HINCRBY', cart, 'seq', 1)
  redis.call('HSET', cart, 'o:' .. sku, seq, 'l:' .. sku, ARGV[7])
end
redis.call('HINCRBY', cart, 'q:' .. sku, add)
touch(cart)
return reply('OK', cart)
"
);

/// ARGV[5]: SKU; ARGV[6]: the new quantity, 0 removes the line.
pub const UPDATE: &str = cart_script!(
    r"
if not open(cart) then return refuse('NOT_FOUND', 0) end
local sku, quantity = ARGV[5], tonumber(ARGV[6])
if redis.call('HEXISTS', cart, 'q:' .. sku) == 0 then return refuse('LINE_NOT_FOUND', 0) end
if quantity == 0 then drop(cart, sku) else redis.call('HSET', cart, 'q:' .. sku, quantity) end
touch(cart)
return reply('OK', cart)
"
);

/// ARGV[5]: SKU. Removing a line that is not there changes nothing.
pub const REMOVE: &str = cart_script!(
    r"
if not open(cart) then return refuse('NOT_FOUND', 0) end
if drop(cart, ARGV[5]) == 0 then return reply('UNCHANGED', cart) end
touch(cart)
return reply('OK', cart)
"
);

pub const CLEAR: &str = cart_script!(
    r"
if not open(cart) then return refuse('NOT_FOUND', 0) end
local lines = skus(cart)
if #lines == 0 then return reply('UNCHANGED', cart) end
for _, sku in ipairs(lines) do drop(cart, sku) end
touch(cart)
return reply('OK', cart)
"
);

/// KEYS[1]: the user's cart (created when missing); KEYS[2]: the anonymous
/// cart, deleted once its lines moved. ARGV[5]: most lines; ARGV[6]: most
/// units per line. All or nothing: a merge that would exceed the line limit
/// changes neither cart.
pub const MERGE: &str = cart_script!(
    r"
open(cart)
local from = KEYS[2]
if redis.call('EXISTS', from) == 0 then return reply('UNCHANGED', cart) end
local incoming = {}
for _, sku in ipairs(skus(from)) do
  incoming[#incoming + 1] = {sku = sku, seq = tonumber(redis.call('HGET', from, 'o:' .. sku)) or 0}
end
table.sort(incoming, function(a, b) return a.seq < b.seq end)
local lines = #skus(cart)
for _, line in ipairs(incoming) do
  if redis.call('HEXISTS', cart, 'q:' .. line.sku) == 0 then lines = lines + 1 end
end
if lines > tonumber(ARGV[5]) then return refuse('CART_FULL', lines) end
for _, line in ipairs(incoming) do
  local sku = line.sku
  local units = tonumber(redis.call('HGET', from, 'q:' .. sku))
  local current = tonumber(redis.call('HGET', cart, 'q:' .. sku) or 0)
  if current == 0 then
    local seq = redis.call('HINCRBY', cart, 'seq', 1)
    redis.call('HSET', cart, 'o:' .. sku, seq, 'l:' .. sku, redis.call('HGET', from, 'l:' .. sku))
  end
  redis.call('HSET', cart, 'q:' .. sku, math.min(current + units, tonumber(ARGV[6])))
end
redis.call('DEL', from)
if #incoming > 0 then touch(cart) end
return reply('OK', cart)
"
);

/// KEYS[2]: the user's checkout attempts. ARGV[5]: the idempotency key;
/// ARGV[6]: the attempt as JSON; ARGV[7]: seconds the attempts are kept. The
/// first attempt recorded for a key wins: a concurrent or later one with the
/// same key gets it back instead of its own.
pub const RECORD_CHECKOUT: &str = r"
local attempts, key = KEYS[2], ARGV[5]
local existing = redis.call('HGET', attempts, key)
if existing then return {'EXISTING', existing} end
redis.call('HSET', attempts, key, ARGV[6])
redis.call('EXPIRE', attempts, tonumber(ARGV[7]))
return {'RECORDED', ARGV[6]}
";

/// KEYS[2]: the user's checkout attempts. ARGV[5]: the order id; ARGV[6]: the
/// idempotency key; then pairs of SKU and ordered units. Takes what the order
/// bought out of the cart (a line drops at 0 or below; a line or units added
/// meanwhile stay), once per order: the marker `checked_out:<order id>` is set
/// in the same step, so a repeat changes nothing.
pub const CHECKED_OUT: &str = cart_script!(
    r"
open(cart)
local attempts, marker = KEYS[2], 'checked_out:' .. ARGV[5]
if redis.call('HEXISTS', attempts, marker) == 1 then return reply('UNCHANGED', cart) end
local changed = false
for i = 7, #ARGV, 2 do
  local sku, ordered = ARGV[i], tonumber(ARGV[i + 1])
  local current = tonumber(redis.call('HGET', cart, 'q:' .. sku) or 0)
  if current > 0 then
    changed = true
    if current - ordered <= 0 then drop(cart, sku) else redis.call('HSET', cart, 'q:' .. sku, current - ordered) end
  end
end
redis.call('HSET', attempts, marker, ARGV[6])
if changed then touch(cart) end
return reply('OK', cart)
"
);
