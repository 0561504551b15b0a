//! The flow hash: `proto::siphash` fed field by field.
//!
//! `proto::flow` builds the message in a buffer and hashes it; here the
//! enabled fields are absorbed as they come, so there is no buffer indexed
//! by a variable length (which the verifier would have to bound) and no loop
//! over the message: each field is at most two pushes of a fixed size.

use aya_ebpf::{bindings::xdp_md, programs::XdpContext};
use proto::maps::{HASH_DST_ADDR, HASH_DST_PORT, HASH_SRC_ADDR, HASH_SRC_PORT, TableKeys};
use proto::siphash::SipHasher24;

use director_xdp_ebpf::packet::View;

/// One flow as the director hashes it: the addresses as offsets in the
/// frame (the fast paths also carry the client address as words, see
/// [`addr_words`]); ports are host order.
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

    /// Appends an address given as [`addr_words`] gives it.
    #[inline(always)]
    fn push_words(&mut self, v6: bool, a: [u64; 2]) {
        if v6 {
            self.push(a[0], 8);
            self.push(a[1], 8);
        } else {
            self.push(a[0], 4);
        }
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

/// What [`director_flow_hash`] hashes besides the addresses, packed into
/// one argument (a BPF function takes at most five).
#[derive(Clone, Copy)]
pub struct HashArgs {
    /// Client port.
    pub sport: u16,
    /// VIP port.
    pub dport: u16,
    /// `HASH_*` bits of the settings.
    pub fields: u8,
    /// Address family of the flow.
    pub v6: bool,
    /// Whether ports may enter the hash (false for fragments).
    pub ports: bool,
}

impl HashArgs {
    const V6: u64 = 1 << 40;
    const PORTS: u64 = 1 << 41;

    /// The argument word.
    #[inline(always)]
    pub fn pack(self) -> u64 {
        u64::from(self.sport)
            | (u64::from(self.dport) << 16)
            | (u64::from(self.fields) << 32)
            | if self.v6 { Self::V6 } else { 0 }
            | if self.ports { Self::PORTS } else { 0 }
    }

    #[inline(always)]
    fn unpack(w: u64) -> Self {
        HashArgs {
            sport: w as u16,
            dport: (w >> 16) as u16,
            fields: (w >> 32) as u8,
            v6: w & Self::V6 != 0,
            ports: w & Self::PORTS != 0,
        }
    }
}

/// The flow hash into `*out`; 1 on success, 0 if an address is not in the
/// frame (the parser checked that it is) or a pointer is null. `key` is the
/// table slot's key (the map value itself), `offsets` the source address
/// offset in its low 16 bits and the destination's in its high ones.
///
/// Inlined into its callers (rule 5): as a global BPF function the call
/// and the argument packing cost about 20 ns a packet; inlined, the verifier walks its paths once per path reaching it
/// (see `director_verifies_well_within_the_kernel_complexity_limit`). The C
/// ABI and packed arguments remain from the global form; they cost nothing
/// once inlined.
#[inline(always)]
pub extern "C" fn director_flow_hash(
    ctx: *mut xdp_md,
    key: *const TableKeys,
    offsets: u32,
    args: u64,
    out: *mut u64,
) -> u32 {
    // SAFETY: the verifier hands a global function either null or a valid
    // pointer to a whole `TableKeys` / `u64`; null is checked.
    let (Some(key), Some(out)) = (unsafe { key.as_ref() }, unsafe { out.as_mut() }) else {
        return 0;
    };
    // Through the stack: otherwise LLVM tests `offsets` itself against
    // the bound `packet::ptr_at` puts on each offset, and the verifier,
    // which does not relate the two, finds the packet access unbounded.
    let src = core::hint::black_box(usize::from(offsets as u16));
    let dst = core::hint::black_box(usize::from((offsets >> 16) as u16));
    let ctx = XdpContext::new(ctx);
    let args = HashArgs::unpack(args);
    let Some(src) = addr_words(&ctx, args.v6, src) else {
        return 0;
    };
    match flow_hash(&ctx, key, src, dst, args) {
        Some(h) => {
            *out = h;
            1
        }
        None => 0,
    }
}

/// The address at `at` in the frame (4 or 16 bytes) as the hash takes it:
/// two words as stored, an IPv4 address in the low 32 bits of the first.
/// `None` if the frame is too short.
#[inline(always)]
pub fn addr_words(ctx: &XdpContext, v6: bool, at: usize) -> Option<[u64; 2]> {
    Some(if v6 {
        let a = View::<16>::at(ctx, at)?;
        [a.u64_raw::<0>(), a.u64_raw::<8>()]
    } else {
        [u64::from(View::<4>::at(ctx, at)?.u32_raw::<0>()), 0]
    })
}

/// The flow hash of the source address `src` ([`addr_words`]), the
/// destination address at `dst` in the frame, and the ports and fields of
/// `args`; `None` if the destination is hashed and not in the frame. The
/// source comes as words so that callers that find it in different places
/// (a packet's source, or the destination an ICMP error quotes) share one
/// copy of the hash; the destination is always the VIP the packet is
/// addressed to, read only when hashed.
#[inline(always)]
pub fn flow_hash(
    ctx: &XdpContext,
    key: &TableKeys,
    src: [u64; 2],
    dst: usize,
    args: HashArgs,
) -> Option<u64> {
    let HashArgs {
        sport,
        dport,
        fields,
        v6,
        ports,
    } = args;
    let mut h = key.hasher();
    let port_fields = if ports {
        fields & (HASH_SRC_PORT | HASH_DST_PORT)
    } else {
        0
    };
    // GLB's default, the source address alone: straight-line code.
    if fields & (HASH_SRC_ADDR | HASH_DST_ADDR) == HASH_SRC_ADDR && port_fields == 0 {
        return Some(if v6 {
            h.write_word(src[0]);
            h.write_word(src[1]);
            h.finish(0, 16)
        } else {
            h.finish(src[0], 4)
        });
    }
    let mut a = Absorber {
        h,
        tail: 0,
        pending: 0,
        total: 0,
    };
    if fields & HASH_SRC_ADDR != 0 {
        a.push_words(v6, src);
    }
    if fields & HASH_DST_ADDR != 0 {
        a.push_words(v6, addr_words(ctx, v6, dst)?);
    }
    if port_fields & HASH_SRC_PORT != 0 {
        a.push_port(sport);
    }
    if port_fields & HASH_DST_PORT != 0 {
        a.push_port(dport);
    }
    Some(a.finish())
}
