//! Arm SMMUv3 (IHI 0070): the pieces of a host driver that are pure logic
//! and tested on the host.
//!
//! - [`regs`]: the register block (`register_structs!`), the ID registers
//!   decoded into [`regs::Features`], and the control-register values.
//! - [`ste`]: stream table entries (abort, stage-2 translation with S2FWB
//!   only on request) and level-1 descriptors.
//! - [`cmd`]: CFGI_STE, CFGI_ALL, TLBI_S12_VMALL, TLBI_S2_IPA, TLBI_NSNH_ALL
//!   and CMD_SYNC.
//! - [`queue`]: PROD/CONS index and wrap arithmetic, full and empty.
//! - [`event`]: event records decoded (never failing: fuzzed by
//!   `hypervisor/fuzz/fuzz_targets/smmu_event.rs`).
//!
//! Not here yet: the driver that programs an SMMU with these (stream table
//! and queue set-up, command submission with a CMD_SYNC timeout, event
//! polling) and its use for passed-through devices.

pub mod cmd;
pub mod event;
pub mod queue;
pub mod regs;
pub mod ste;
