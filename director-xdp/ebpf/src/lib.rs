//! What the director's and the redirect module's objects share: bounds-checked
//! access to the frame and the header offsets (see `packet`).
//!
//! # The rules this code keeps, for the verifier and for LLVM
//!
//! The code of both objects looks the way it does because of these rules;
//! comments cite them by number ("rule 3") where they apply. Each was found
//! the hard way: breaking one is refused at load time (the object tests load
//! every program) or costs nanoseconds on every packet (`make bench`).
//!
//! 1. **Packet memory only through `packet::ptr_at`**, usually as a
//!    `packet::View<N>` window: it holds the comparison with `data_end`
//!    the verifier demands, and a cap on the offset so that the verifier can
//!    bound pointers built from offsets read out of the packet (IHL, TCP data
//!    offset, extension header lengths). Windows are 2 bytes or more: LLVM
//!    rewrites `p + 1 > end` as `p >= end`, from which the verifier learns
//!    no range.
//! 2. **No enum that carries data on the packet path.** Where variants carry
//!    different data, some bytes are undefined in some of them; LLVM merges
//!    those bytes with whatever a register held, and the verifier refuses
//!    the result when that was a pointer. Fieldless enums, and data in fully
//!    initialised structs.
//! 3. **No `memset`, no `memmove`.** bpf-linker (`--bpf-expand-memcpy-in-order`)
//!    expands `memcpy` but calls `memset` and `memmove`, which in BPF are
//!    byte loops behind a call (about 5 instructions a byte). LLVM emits
//!    `memset` for a zeroed struct or array kept in memory and for any run
//!    of zero stores of 16 bytes or more, and `memmove` for byte arrays
//!    copied between the packet and the stack. So: structs of whole words
//!    built with their values (no `bool`, byte or byte-array fields),
//!    `MaybeUninit` buffers that a helper fills, volatile stores where zeros
//!    are really needed.
//! 4. **Stack structs are `#[repr(C, align(8))]` without padding.** LLVM
//!    merges neighbouring stores into 8-byte ones and the verifier refuses
//!    misaligned stack access; a global function's argument must be
//!    initialised in every byte. The director's object is built with
//!    `+allows-misaligned-mem-access` (packet and map memory may be read
//!    misaligned on the architectures XDP runs on), the redirect module's
//!    is not: with it, LLVM merged that program's stack stores into
//!    misaligned ones (`build.rs`).
//! 5. **Global functions for long, rare paths; the hot path inlined.** A
//!    `#[unsafe(no_mangle)] extern "C"` function marked `#[inline(never)]`
//!    is verified once rather than once per path that reaches it, but a
//!    call and its argument packing cost 10 to 20 ns: the ICMP answers to
//!    packets too big and the IP-in-IP encapsulation are global functions;
//!    the flow hash, the GUE encapsulation and the redirect module's socket
//!    check and forwarding are inlined (within the 512 bytes of stack a
//!    program may take). A global function's pointer argument is null or
//!    valid (checked first), and points to the stack, never to the packet.
//!    Socket references are released in the function that takes them.
//! 6. **Constant offsets where LLVM would specialise.** With an offset that
//!    is a run-time value, LLVM specialised some offsets per branch and not
//!    the bounds checks guarding them, and the verifier saw unchecked
//!    writes: the encapsulation has one copy per L2 length and family.
//! 7. **Variable-length bytes a helper reads live on the stack**
//!    (`bpf_xdp_load_bytes` into a buffer of the largest length): the
//!    verifier accepts a run-time length for a stack buffer, not for packet
//!    memory.
//! 8. **Every packet pointer is derived again after the frame moves**
//!    (`bpf_xdp_adjust_head`): the verifier forgets the old ones.
//! 9. **Nothing can panic.** The panic handler is an endless loop, which
//!    the verifier refuses wherever it is reachable; indexing and `unwrap`
//!    are lint errors here (`Cargo.toml`).
#![no_std]

pub mod packet;
