//! SipHash-2-4, the one implementation used by the director's packet hash
//! (in eBPF) and by the table builder (in user space).
//!
//! The streaming form ([`SipHasher24::write_word`] then
//! [`SipHasher24::finish`]) has no loops over the input, so the eBPF program
//! can hash fixed-size messages without the verifier seeing a data-dependent
//! loop, and the table builder can absorb a row's 8-byte seed once and reuse
//! that state for every backend of the row.

/// A SipHash-2-4 state after zero or more whole 8-byte words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipHasher24 {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

#[inline(always)]
fn sipround(v: &mut SipHasher24) {
    v.v0 = v.v0.wrapping_add(v.v1);
    v.v1 = v.v1.rotate_left(13);
    v.v1 ^= v.v0;
    v.v0 = v.v0.rotate_left(32);
    v.v2 = v.v2.wrapping_add(v.v3);
    v.v3 = v.v3.rotate_left(16);
    v.v3 ^= v.v2;
    v.v0 = v.v0.wrapping_add(v.v3);
    v.v3 = v.v3.rotate_left(21);
    v.v3 ^= v.v0;
    v.v2 = v.v2.wrapping_add(v.v1);
    v.v1 = v.v1.rotate_left(17);
    v.v1 ^= v.v2;
    v.v2 = v.v2.rotate_left(32);
}

impl SipHasher24 {
    /// A fresh state for the 16-byte `key` (read as two little-endian words).
    #[inline(always)]
    pub const fn new(key: &[u8; 16]) -> Self {
        let k0 = u64::from_le_bytes([
            key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
        ]);
        let k1 = u64::from_le_bytes([
            key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15],
        ]);
        Self {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
        }
    }

    /// The four state words (v0..v3), for vectorised implementations that
    /// continue from this state, and for the director's key map.
    #[inline(always)]
    pub const fn state(&self) -> [u64; 4] {
        [self.v0, self.v1, self.v2, self.v3]
    }

    /// The state whose words are `v` (as [`SipHasher24::state`] gives them).
    #[inline(always)]
    pub const fn from_state(v: [u64; 4]) -> Self {
        let [v0, v1, v2, v3] = v;
        Self { v0, v1, v2, v3 }
    }

    /// Absorbs one whole 8-byte block, given as its little-endian value.
    #[inline(always)]
    pub fn write_word(&mut self, m: u64) {
        self.v3 ^= m;
        sipround(self);
        sipround(self);
        self.v0 ^= m;
    }

    /// Absorbs the last, partial block and returns the digest.
    ///
    /// `tail` holds the message's last `total_len % 8` bytes packed
    /// little-endian (higher bytes zero); `total_len` is the whole message
    /// length in bytes, words already written included.
    #[inline(always)]
    pub fn finish(mut self, tail: u64, total_len: usize) -> u64 {
        let b = ((total_len as u64) << 56) | tail;
        self.write_word(b);
        self.v2 ^= 0xff;
        sipround(&mut self);
        sipround(&mut self);
        sipround(&mut self);
        sipround(&mut self);
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }
}

/// Packs up to 8 bytes little-endian into a word (the layout SipHash reads).
#[inline(always)]
pub fn le_word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = if bytes.len() < 8 { bytes.len() } else { 8 };
    w[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(w)
}

/// SipHash-2-4 of `msg` under `key`.
pub fn siphash24(key: &[u8; 16], msg: &[u8]) -> u64 {
    let mut h = SipHasher24::new(key);
    let (words, rest) = msg.as_chunks::<8>();
    for w in words {
        h.write_word(u64::from_le_bytes(*w));
    }
    h.finish(le_word(rest), msg.len())
}

/// `L` lanes of SipHash state, for hashing `L` messages at once.
#[derive(Clone, Copy)]
struct Lanes<const L: usize> {
    v0: [u64; L],
    v1: [u64; L],
    v2: [u64; L],
    v3: [u64; L],
}

impl<const L: usize> Lanes<L> {
    // Written lane by lane so that the compiler turns each step into one
    // vector instruction when the caller is compiled for AVX2 or AVX-512.
    #[inline(always)]
    fn round(&mut self) {
        for i in 0..L {
            self.v0[i] = self.v0[i].wrapping_add(self.v1[i]);
            self.v1[i] = self.v1[i].rotate_left(13);
            self.v1[i] ^= self.v0[i];
            self.v0[i] = self.v0[i].rotate_left(32);
            self.v2[i] = self.v2[i].wrapping_add(self.v3[i]);
            self.v3[i] = self.v3[i].rotate_left(16);
            self.v3[i] ^= self.v2[i];
            self.v0[i] = self.v0[i].wrapping_add(self.v3[i]);
            self.v3[i] = self.v3[i].rotate_left(21);
            self.v3[i] ^= self.v0[i];
            self.v2[i] = self.v2[i].wrapping_add(self.v1[i]);
            self.v1[i] = self.v1[i].rotate_left(17);
            self.v1[i] ^= self.v2[i];
            self.v2[i] = self.v2[i].rotate_left(32);
        }
    }

    #[inline(always)]
    fn write(&mut self, m: &[u64; L]) {
        for (v, m) in self.v3.iter_mut().zip(m) {
            *v ^= m;
        }
        self.round();
        self.round();
        for (v, m) in self.v0.iter_mut().zip(m) {
            *v ^= m;
        }
    }
}

/// Finishes `L` messages that share the prefix already absorbed in `base`:
/// lane `i` absorbs `full[..][i]` as whole words, then the last partial
/// block `tail[i]`; every message is `total_len` bytes long. Equal, lane by
/// lane, to [`SipHasher24::write_word`] and [`SipHasher24::finish`]; the
/// table builder uses it to score several backends of a row together.
#[inline(always)]
pub fn finish_lanes<const L: usize>(
    base: &SipHasher24,
    full: &[[u64; L]],
    tail: &[u64; L],
    total_len: usize,
) -> [u64; L] {
    let mut v = Lanes {
        v0: [base.v0; L],
        v1: [base.v1; L],
        v2: [base.v2; L],
        v3: [base.v3; L],
    };
    for m in full {
        v.write(m);
    }
    let mut b = *tail;
    for x in &mut b {
        *x |= (total_len as u64) << 56;
    }
    v.write(&b);
    for i in 0..L {
        v.v2[i] ^= 0xff;
    }
    v.round();
    v.round();
    v.round();
    v.round();
    let mut out = [0u64; L];
    for (i, o) in out.iter_mut().enumerate() {
        *o = v.v0[i] ^ v.v1[i] ^ v.v2[i] ^ v.v3[i];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_every_reference_vector() {
        let text = include_str!("../compat/siphash-vectors.json");
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let key: [u8; 16] = crate::hex::decode_array(doc["key"].as_str().unwrap()).unwrap();
        let vectors = doc["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 64, "the reference set has 64 vectors");
        for v in vectors {
            let len = v["len"].as_u64().unwrap() as usize;
            let msg: Vec<u8> = (0..len as u8).collect();
            let want: [u8; 8] = crate::hex::decode_array(v["digest"].as_str().unwrap()).unwrap();
            assert_eq!(
                siphash24(&key, &msg).to_le_bytes(),
                want,
                "message of {len} bytes"
            );
        }
    }

    #[test]
    fn lanes_equal_one_message_at_a_time() {
        let key = [0x5au8; 16];
        let mut base = SipHasher24::new(&key);
        base.write_word(0x1122_3344_5566_7788);
        let full = [[1u64, 2, 3, 4], [5, 6, 7, 8]];
        let tail = [0xa, 0xb, 0xc, 0xd];
        let got = finish_lanes(&base, &full, &tail, 28);
        for i in 0..4 {
            let mut h = base;
            h.write_word(full[0][i]);
            h.write_word(full[1][i]);
            assert_eq!(got[i], h.finish(tail[i], 28), "lane {i}");
        }
    }

    #[test]
    fn streaming_with_a_shared_prefix_equals_one_shot() {
        let key = [7u8; 16];
        let prefix = 0x0123_4567_89ab_cdefu64;
        let mut base = SipHasher24::new(&key);
        base.write_word(prefix);
        let ip = [203u8, 0, 113, 9];
        let mut msg = prefix.to_le_bytes().to_vec();
        msg.extend_from_slice(&ip);
        assert_eq!(base.finish(le_word(&ip), 12), siphash24(&key, &msg));
    }
}
