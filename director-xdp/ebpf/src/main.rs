//! The director's XDP program.
//!
//! For now it passes every packet. It also hashes the 4 bytes after the
//! Ethernet header with `proto`'s SipHash into `LAST_HASH`, so that a test
//! can prove that the eBPF build and user space run the same hash code.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::map, macros::xdp, maps::Array, programs::XdpContext};
use proto::siphash::{SipHasher24, le_word};

/// Length of an Ethernet II header without VLAN tags.
const ETH_HLEN: usize = 14;
/// Bytes hashed into `LAST_HASH`.
const PROBE_LEN: usize = 4;
/// SipHash key of the probe; must equal `director_xdp::PROBE_HASH_KEY`.
const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// Digest of the last frame long enough to hash; user space reads index 0.
#[map]
static LAST_HASH: Array<u64> = Array::with_max_entries(1, 0);

/// The director: for now, XDP_PASS for every frame.
#[xdp]
pub fn director(ctx: XdpContext) -> u32 {
    if let Some(probe) = ptr_at::<[u8; PROBE_LEN]>(&ctx, ETH_HLEN) {
        // SAFETY: `ptr_at` checked that the whole array lies inside the frame.
        let bytes = unsafe { *probe };
        let digest = SipHasher24::new(&KEY).finish(le_word(&bytes), PROBE_LEN);
        if let Some(slot) = LAST_HASH.get_ptr_mut(0) {
            // SAFETY: the kernel returned a pointer to a live u64 array value.
            unsafe { *slot = digest };
        }
    }
    xdp_action::XDP_PASS
}

/// A pointer to a `T` at `offset` bytes into the frame, or `None` when the
/// frame is too short: the only way this program reads packet memory, so that
/// every read carries the bounds check the verifier demands.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

// `no_std` needs a handler. A panic path that survives optimisation would
// leave this endless loop in the object, which the verifier rejects: such a
// bug fails at load time (in the tests), never on a live packet.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// The kernel refuses GPL-only helpers to programs without a GPL-compatible
/// licence string.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
