//! Lower-case hex for keys and seeds, as GLB writes them in its configs.

/// Why a hex string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HexError {
    /// The string has the wrong number of digits for the value.
    Length { expected: usize, found: usize },
    /// A character that is not a hex digit, at this byte offset.
    Digit { offset: usize },
}

impl core::fmt::Display for HexError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HexError::Length { expected, found } => {
                write!(f, "expected {expected} hex digits, found {found}")
            }
            HexError::Digit { offset } => write!(f, "not a hex digit at offset {offset}"),
        }
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes exactly `N` bytes from `2 * N` hex digits.
pub fn decode_array<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return Err(HexError::Length {
            expected: 2 * N,
            found: b.len(),
        });
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = nibble(b[2 * i]).ok_or(HexError::Digit { offset: 2 * i })?;
        let lo = nibble(b[2 * i + 1]).ok_or(HexError::Digit { offset: 2 * i + 1 })?;
        *o = (hi << 4) | lo;
    }
    Ok(out)
}

/// Writes `bytes` as lower-case hex into `out` (which must be twice as long).
pub fn encode_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// `bytes` as a lower-case hex string.
#[cfg(feature = "std")]
pub fn encode(bytes: &[u8]) -> std::string::String {
    let mut out = std::vec![0u8; bytes.len() * 2];
    encode_into(bytes, &mut out);
    // Only ASCII digits were written.
    std::string::String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_bad_input() {
        let k: [u8; 4] = decode_array("00ff7A10").unwrap();
        assert_eq!(k, [0x00, 0xff, 0x7a, 0x10]);
        assert_eq!(encode(&k), "00ff7a10");
        assert_eq!(
            decode_array::<4>("00ff"),
            Err(HexError::Length {
                expected: 8,
                found: 4
            })
        );
        assert_eq!(
            decode_array::<2>("0g00"),
            Err(HexError::Digit { offset: 1 })
        );
    }
}
