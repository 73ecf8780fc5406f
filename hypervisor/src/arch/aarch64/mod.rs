//! AArch64: entry, vectors, system registers, TLB and cache maintenance, and
//! the decoders for what the hardware reports.

pub mod esr;
