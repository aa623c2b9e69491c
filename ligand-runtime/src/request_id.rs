//! [`RequestId`]: the correlation ID of one request, made without allocating.

use std::fmt;

use serde::{Serialize, Serializer};

/// The correlation ID of one request: 128 random bits (a UUID v4) written as 32 lowercase hex
/// digits. It is sent to the caller on denial, carried by [`Ctx`](crate::Ctx) and recorded in
/// every audit event of the request.
///
/// The text is kept inline, so the ID is `Copy` and [`as_str`](Self::as_str) borrows it:
/// making and passing one never touches the allocator.
///
/// ```
/// use ligand_runtime::RequestId;
///
/// let id = RequestId::new();
/// assert_eq!(id.as_str().len(), 32);
/// assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
/// assert_ne!(id, RequestId::new());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId {
    hex: [u8; 32],
}

impl RequestId {
    /// A new random ID.
    pub fn new() -> Self {
        Self::from_bytes(uuid::Uuid::new_v4().as_bytes())
    }

    /// The ID of `bytes`, most significant first: eight bytes at a time in a `u64`, each
    /// nibble spread into a byte of its own and turned into its digit without a branch or a
    /// table (a lookup per digit costs several times as much).
    fn from_bytes(bytes: &[u8; 16]) -> Self {
        let mut hex = [0u8; 32];
        for (digits, half) in hex.chunks_exact_mut(16).zip(bytes.chunks_exact(8)) {
            let mut half_bytes = [0u8; 8];
            half_bytes.copy_from_slice(half);
            let value = u64::from_be_bytes(half_bytes);
            let (high, low) = (hex8((value >> 32) as u32), hex8(value as u32));
            digits[..8].copy_from_slice(&high);
            digits[8..].copy_from_slice(&low);
        }
        Self { hex }
    }

    /// The ID's 32 lowercase hex digits, as bytes: what a writer copies, without the UTF-8
    /// check [`as_str`](Self::as_str) makes.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.hex
    }

    /// The ID as 32 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        // Every byte is an ASCII hex digit, written only by `from_bytes`.
        std::str::from_utf8(&self.hex).unwrap_or_default()
    }
}

/// The eight lowercase hex digits of `value`, most significant first.
fn hex8(value: u32) -> [u8; 8] {
    // One nibble per byte, the most significant nibble in the most significant byte.
    let mut x = u64::from(value);
    x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    // 0x01 in each byte whose nibble is above 9, then '0' + nibble, plus the gap between
    // '9' + 1 and 'a' for those.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'9' - 1)).to_be_bytes()
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

impl AsRef<str> for RequestId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for RequestId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RequestId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_uuid_in_simple_form() {
        let uuid = uuid::Uuid::new_v4();
        let id = RequestId::from_bytes(uuid.as_bytes());
        assert_eq!(id.as_str(), uuid.simple().to_string());
        assert_eq!(id.to_string(), uuid.simple().to_string());
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            format!("\"{}\"", uuid.simple())
        );
    }

    /// Two digits a byte, from a table: what `from_bytes` must agree with.
    fn reference(bytes: &[u8; 16]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    proptest::proptest! {
        #[test]
        fn text_is_each_byte_as_two_lowercase_hex_digits(bytes in proptest::prelude::any::<[u8; 16]>()) {
            let id = RequestId::from_bytes(&bytes);
            proptest::prop_assert_eq!(id.as_str(), reference(&bytes));
        }
    }

    #[test]
    fn every_nibble_renders_in_every_position() {
        for nibble in 0..16u128 {
            for position in 0..32 {
                let bytes = (nibble << (4 * position)).to_be_bytes();
                assert_eq!(RequestId::from_bytes(&bytes).as_str(), reference(&bytes));
            }
        }
    }

    #[test]
    fn extremes_render_every_digit() {
        assert_eq!(
            RequestId::from_bytes(&0u128.to_be_bytes()).as_str(),
            "0".repeat(32)
        );
        assert_eq!(
            RequestId::from_bytes(&u128::MAX.to_be_bytes()).as_str(),
            "f".repeat(32)
        );
        assert_eq!(
            RequestId::from_bytes(&0x0123_4567_89ab_cdef_0123_4567_89ab_cdef_u128.to_be_bytes())
                .as_str(),
            "0123456789abcdef0123456789abcdef"
        );
    }
}
