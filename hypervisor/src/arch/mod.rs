//! Architecture support. `aarch64::esr` and the other decoders are pure and
//! build everywhere; the parts that execute privileged instructions build only
//! for the bare-metal target.

pub mod aarch64;
