//! Reference programs for `make bench`, built only with the crate's `bench`
//! feature (the objects users run do not carry them): the cost of `XDP_TX`
//! alone (`bench_floor`), of the smallest possible encapsulation
//! (`bench_min_encap`) and of the director's hash of an IPv6 address alone
//! (`bench_siphash`), each measured beside the director in the same run.

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_xdp_adjust_head, macros::xdp,
    programs::XdpContext,
};
use proto::siphash::SipHasher24;

use director_xdp_ebpf::packet::{View, WriteView};

/// The cost of the `XDP_TX` path alone.
#[xdp]
pub fn bench_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

/// The least an encapsulating director must do: grow the head by 40 bytes,
/// write 54 constant bytes, transmit.
#[xdp]
pub fn bench_min_encap(ctx: XdpContext) -> u32 {
    if min_encap(&ctx) {
        xdp_action::XDP_TX
    } else {
        xdp_action::XDP_DROP
    }
}

/// The director's default hash of an IPv6 client address (SipHash-2-4 of 16
/// bytes from a key state of 4 words), alone, on the frame's first 32 bytes;
/// `XDP_TX`. `XDP_DROP` for a shorter frame, or a hash of zero: branching on
/// the hash keeps LLVM from dropping it.
#[xdp]
pub fn bench_siphash(ctx: XdpContext) -> u32 {
    match siphash(&ctx) {
        Some(h) if h != 0 => xdp_action::XDP_TX,
        _ => xdp_action::XDP_DROP,
    }
}

/// Length of the constant outer header.
const HEADER_LEN: usize = 54;
/// Bytes added in front of the frame.
const GROW: usize = 40;

/// Moves the head by 40 bytes and writes 54 constant bytes (Ethernet, IPv4,
/// UDP and 12 bytes of GUE-like data) at the new head, as the director
/// writes its header: in words, one bounds check for the block. (Copied as
/// a byte array, the header became 54 byte loads and 54 byte stores, about
/// 10 ns more, and the reference would have flattered the director.)
/// `false` if there is no headroom.
#[inline(always)]
fn min_encap(ctx: &XdpContext) -> bool {
    // SAFETY: `ctx.ctx` is the program's own context; the helper checks the
    // headroom and fails without moving anything.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(GROW as i32)) } != 0 {
        return false;
    }
    const HEADER: [u8; HEADER_LEN] = [
        // Ethernet: locally administered MACs, IPv4.
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00,
        // IPv4 192.0.2.1 -> 198.51.100.11, UDP (checksum left 0).
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 198, 51, 100, 11,
        // UDP 32768 -> 19523, length 20, no checksum.
        0x80, 0, 0x4c, 0x43, 0, 20, 0, 0,
        // GUE-like: hlen 2, IPv4 inner, flags 0; GLB type 0, next 0, 1 hop;
        // one hop 198.51.100.12.
        2, 4, 0, 0, 0, 0, 0, 1, 198, 51, 100, 12,
    ];
    /// The little-endian word of `N` header bytes at `at`, at compile time
    /// (an index out of range fails the build).
    #[allow(clippy::indexing_slicing)]
    const fn header_word<const N: usize>(at: usize) -> u64 {
        let mut w = 0u64;
        let mut i = 0;
        while i < N {
            w |= (HEADER[at + i] as u64) << (8 * i);
            i += 1;
        }
        w
    }
    // Rule 8: the frame moved, so the window is taken after the move.
    let Some(w) = WriteView::<HEADER_LEN>::at(ctx, 0) else {
        return false;
    };
    let mut ok = true;
    ok &= w.put::<u64>(0, const { header_word::<8>(0) });
    ok &= w.put::<u64>(8, const { header_word::<8>(8) });
    ok &= w.put::<u64>(16, const { header_word::<8>(16) });
    ok &= w.put::<u64>(24, const { header_word::<8>(24) });
    ok &= w.put::<u64>(32, const { header_word::<8>(32) });
    ok &= w.put::<u64>(40, const { header_word::<8>(40) });
    ok &= w.put::<u32>(48, const { header_word::<4>(48) } as u32);
    ok &= w.put::<u16>(52, const { header_word::<2>(52) } as u16);
    ok
}

/// The hash `hash::flow_hash` takes of an IPv6 source address alone (GLB's
/// default fields), with the key state and the message both read from the
/// frame's first 32 bytes, so that nothing is known when the object is
/// compiled. `None` if the frame is shorter.
#[inline(always)]
fn siphash(ctx: &XdpContext) -> Option<u64> {
    let b = View::<32>::at(ctx, 0)?;
    let mut h = SipHasher24::from_state([
        b.u64_raw::<0>(),
        b.u64_raw::<8>(),
        b.u64_raw::<16>(),
        b.u64_raw::<24>(),
    ]);
    h.write_word(b.u64_raw::<16>());
    h.write_word(b.u64_raw::<24>());
    Some(h.finish(0, 16))
}
