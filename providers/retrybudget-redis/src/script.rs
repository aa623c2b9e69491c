//! The server-side script: one target's deltas in, its fleet totals out.

/// `KEYS[1]`: the target's bucket hash; `KEYS[2]`: its instance set.
/// `ARGV`: calls, retries, window in seconds, instance id, TTL in seconds.
/// Returns `{calls, retries, instances}` over the window, the deltas included.
pub(crate) const SYNC: &str = r#"
local now = tonumber(redis.call('TIME')[1])
local window = tonumber(ARGV[3])
local oldest = now - window + 1
if tonumber(ARGV[1]) > 0 then redis.call('HINCRBY', KEYS[1], 'c' .. now, ARGV[1]) end
if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', KEYS[1], 'r' .. now, ARGV[2]) end
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', oldest - 1)
local calls, retries = 0, 0
local aged = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local field = all[i]
  local second = tonumber(string.sub(field, 2))
  local count = tonumber(all[i + 1])
  if second == nil or second < oldest then
    aged[#aged + 1] = field
  elseif string.sub(field, 1, 1) == 'c' then
    calls = calls + count
  else
    retries = retries + count
  end
end
if #aged > 0 then redis.call('HDEL', KEYS[1], unpack(aged)) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return {calls, retries, redis.call('ZCARD', KEYS[2])}
"#;
