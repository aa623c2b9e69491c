//! The GCRA as one Lua script run atomically inside Redis, and the decoding of its reply.
//!
//! The script reads the server's clock (`TIME`), so instances whose own clocks disagree still
//! share one timeline. The caller's state is one key holding its theoretical arrival time
//! (TAT) in microseconds since the epoch; it expires when the TAT passes, the moment the state
//! becomes indistinguishable from a fresh caller's, so idle callers cost no memory.

use std::time::Duration;

use redis::Value;

/// The script. `KEYS[1]`: the caller's state. `ARGV[1]`: the emission interval in µs.
/// `ARGV[2]`: the burst. Reply: `{allowed (0|1), retry_after_us, remaining, tat_minus_now_us}`.
pub(crate) const GCRA: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local window = interval * burst
local new_tat = tat + interval
local allow_at = new_tat - window
if now < allow_at then
  return {0, allow_at - now, 0, tat - now}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
return {1, 0, math.floor((window - (new_tat - now)) / interval), new_tat - now}
";

/// One decision of the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    /// Until the next conforming request; zero when allowed.
    pub(crate) retry_after: Duration,
    /// Requests the caller may still make at once.
    pub(crate) remaining: u32,
}

/// Why a script reply was not a decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected rate-limit script reply: {0}")]
pub(crate) struct BadReply(pub(crate) String);

impl Decision {
    /// Decodes the script's reply, refusing anything but the documented shape: a reply that
    /// cannot be read never allows.
    pub(crate) fn from_reply(reply: &Value, burst: u32) -> Result<Self, BadReply> {
        let bad = || BadReply(format!("{reply:?}"));
        let Value::Array(items) = reply else {
            return Err(bad());
        };
        let [allowed, retry_us, remaining, backlog_us] = items.as_slice() else {
            return Err(bad());
        };
        let int = |value: &Value| match value {
            Value::Int(n) if *n >= 0 => Ok(*n),
            _ => Err(bad()),
        };
        let allowed = match int(allowed)? {
            0 => false,
            1 => true,
            _ => return Err(bad()),
        };
        // The backlog is not used, but it is part of the shape: a reply whose fourth item is
        // not a count is not the script's.
        int(backlog_us)?;
        let retry_us = u64::try_from(int(retry_us)?).map_err(|_| bad())?;
        let remaining = u32::try_from(int(remaining)?).map_err(|_| bad())?;
        // An allow carries no wait and fits the burst; a denial carries a positive wait.
        if remaining >= burst || allowed == (retry_us > 0) {
            return Err(bad());
        }
        Ok(Self {
            allowed,
            retry_after: Duration::from_micros(retry_us),
            remaining,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ints(values: &[i64]) -> Value {
        Value::Array(values.iter().copied().map(Value::Int).collect())
    }

    #[test]
    fn decodes_allow_and_deny() {
        assert_eq!(
            Decision::from_reply(&ints(&[1, 0, 4, 100]), 5),
            Ok(Decision {
                allowed: true,
                retry_after: Duration::ZERO,
                remaining: 4,
            })
        );
        assert_eq!(
            Decision::from_reply(&ints(&[0, 2500, 0, 5000]), 5),
            Ok(Decision {
                allowed: false,
                retry_after: Duration::from_micros(2500),
                remaining: 0,
            })
        );
    }

    #[test]
    fn refuses_malformed_replies() {
        for reply in [
            Value::Nil,
            Value::Okay,
            Value::Int(1),
            ints(&[1, 0, 4]),
            ints(&[1, 0, 4, 0, 0]),
            ints(&[2, 0, 0, 0]),
            ints(&[-1, 0, 0, 0]),
            ints(&[1, 5, 0, 0]),
            ints(&[0, 0, 0, 0]),
            ints(&[1, 0, 5, 0]),
            ints(&[1, 0, 0, -1]),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(0),
                Value::Int(0),
                Value::Nil,
            ]),
            Value::Array(vec![
                Value::BulkString(b"1".to_vec()),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
            ]),
        ] {
            assert!(
                Decision::from_reply(&reply, 5).is_err(),
                "accepted {reply:?}"
            );
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            Just(Value::Okay),
            any::<i64>().prop_map(Value::Int),
            (0i64..3).prop_map(Value::Int),
            any::<Vec<u8>>().prop_map(Value::BulkString),
            any::<f64>().prop_map(Value::Double),
            ".*".prop_map(Value::SimpleString),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(inner, 0..6).prop_map(Value::Set),
            ]
        })
    }

    proptest! {
        /// Whatever the backend answers, decoding never panics, and an allow is only ever
        /// read from the exact documented shape.
        #[test]
        fn arbitrary_replies_never_allow_unless_well_formed(reply in value(), burst in 1u32..100) {
            if let Ok(decision) = Decision::from_reply(&reply, burst) {
                let Value::Array(items) = &reply else { panic!("decoded a non-array") };
                prop_assert_eq!(items.len(), 4);
                prop_assert!(items.iter().all(|item| matches!(item, Value::Int(n) if *n >= 0)));
                prop_assert!(decision.remaining < burst);
                prop_assert_eq!(decision.allowed, decision.retry_after.is_zero());
            }
        }

        /// Every well-formed reply decodes to what it says.
        #[test]
        fn well_formed_replies_round_trip(
            allowed: bool, retry in 1i64..1_000_000_000, burst in 1u32..1000, remaining in 0u32..1000
        ) {
            let remaining = remaining % burst;
            let reply = ints(&[
                i64::from(allowed),
                if allowed { 0 } else { retry },
                i64::from(if allowed { remaining } else { 0 }),
                7,
            ]);
            let decision = Decision::from_reply(&reply, burst).unwrap();
            prop_assert_eq!(decision.allowed, allowed);
        }
    }
}
