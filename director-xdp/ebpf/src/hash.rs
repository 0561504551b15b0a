//! The flow hash: `proto::siphash` fed field by field.
//!
//! `proto::flow` builds the message in a buffer and hashes it; here the
//! enabled fields are absorbed as they come, so there is no buffer indexed
//! by a variable length (which the verifier would have to bound) and no loop
//! over the message: each field is at most two pushes of a fixed size.

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use proto::maps::{HASH_DST_ADDR, HASH_DST_PORT, HASH_SRC_ADDR, HASH_SRC_PORT};
use proto::siphash::SipHasher24;

use crate::packet::View;

/// One flow as the director hashes it. The addresses stay in the frame
/// (copies would cost stack); ports are host order.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Flow {
    /// Offset of the client address in the frame.
    pub src: usize,
    /// Offset of the VIP in the frame.
    pub dst: usize,
    /// Client port (0 for echo and fragments).
    pub sport: u16,
    /// VIP port (0 for echo and fragments).
    pub dport: u16,
}

/// A SipHash state plus the bytes not yet forming a whole 8-byte word.
struct Absorber {
    h: SipHasher24,
    /// Pending bytes, packed little-endian (the first byte lowest).
    tail: u64,
    /// Number of pending bytes, 0..8.
    pending: u32,
    /// Message length so far.
    total: u32,
}

impl Absorber {
    #[inline(always)]
    fn new(key: &[u8; 16]) -> Self {
        Absorber {
            h: SipHasher24::new(key),
            tail: 0,
            pending: 0,
            total: 0,
        }
    }

    /// Appends `n` bytes (2, 4 or 8), given packed little-endian in `v`
    /// (bits above `8 * n` zero).
    #[inline(always)]
    fn push(&mut self, v: u64, n: u32) {
        // `pending` < 8, so the shift is < 64.
        self.tail |= v.wrapping_shl(self.pending * 8);
        let fill = self.pending + n;
        if fill >= 8 {
            self.h.write_word(self.tail);
            let left = fill - 8;
            // The bytes of `v` that did not fit; none when it filled the word
            // exactly (a shift by 64 would not give zero).
            self.tail = if left == 0 {
                0
            } else {
                v.wrapping_shr((n - left) * 8)
            };
            self.pending = left;
        } else {
            self.pending = fill;
        }
        self.total += n;
    }

    /// Appends the address at `at` in the frame (4 or 16 bytes); `false`
    /// if the frame is too short (the parser checked it is not).
    #[inline(always)]
    fn push_addr(&mut self, ctx: &XdpContext, v6: bool, at: usize) -> bool {
        if v6 {
            let Some(a) = View::<16>::at(ctx, at) else {
                return false;
            };
            self.push(u64::from_le_bytes(a.array::<0, 8>()), 8);
            self.push(u64::from_le_bytes(a.array::<8, 8>()), 8);
        } else {
            let Some(a) = View::<4>::at(ctx, at) else {
                return false;
            };
            self.push(u64::from(u32::from_le_bytes(a.array::<0, 4>())), 4);
        }
        true
    }

    /// A port in the message is 2 bytes big-endian.
    #[inline(always)]
    fn push_port(&mut self, port: u16) {
        self.push(u64::from(u16::from_le_bytes(port.to_be_bytes())), 2);
    }

    #[inline(always)]
    fn finish(self) -> u64 {
        self.h.finish(self.tail, self.total as usize)
    }
}

/// What [`director_flow_hash`] hashes, and where it puts the hash.
#[repr(C)]
pub struct HashIo {
    /// The table slot's hash key.
    pub key: [u8; 16],
    /// The flow.
    pub flow: Flow,
    /// `HASH_*` bits of the settings.
    pub fields: u8,
    /// Address family of the flow.
    pub v6: bool,
    /// Whether ports may enter the hash (false for fragments).
    pub ports: bool,
    /// Out: the hash.
    pub hash: u64,
}

/// The flow hash of `io` into `io.hash`; 1 on success, 0 if an address is
/// not in the frame (the parser checked that it is) or `io` is null.
///
/// A global BPF function (exported, not inlined): the verifier checks it
/// once, on its own, with unknown arguments, instead of walking its 16
/// paths (one per set of enabled fields) again for every path that reaches
/// it. Hence the C ABI, the raw context and the status as a `u32`.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn director_flow_hash(ctx: *mut xdp_md, io: *mut HashIo) -> u32 {
    // SAFETY: the verifier hands a global function either null or a valid
    // pointer to a whole `HashIo`; null is checked.
    let Some(io) = (unsafe { io.as_mut() }) else {
        return 0;
    };
    let ctx = XdpContext::new(ctx);
    let (fields, v6, flow) = (io.fields, io.v6, io.flow);
    let mut a = Absorber::new(&io.key);
    if fields & HASH_SRC_ADDR != 0 && !a.push_addr(&ctx, v6, flow.src) {
        return 0;
    }
    if fields & HASH_DST_ADDR != 0 && !a.push_addr(&ctx, v6, flow.dst) {
        return 0;
    }
    if io.ports && fields & HASH_SRC_PORT != 0 {
        a.push_port(flow.sport);
    }
    if io.ports && fields & HASH_DST_PORT != 0 {
        a.push_port(flow.dport);
    }
    io.hash = a.finish();
    1
}
