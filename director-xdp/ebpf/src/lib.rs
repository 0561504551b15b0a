//! What the director's and the redirect module's objects share: bounds-checked
//! access to the frame and the header offsets (see `packet`).
#![no_std]

pub mod packet;
