//! Firmware calls from a guest: PSCI 1.1 (Arm DEN 0022) and the SMCCC 1.1
//! architecture calls (Arm DEN 0028), as a pure function of the call's
//! registers and the VM's power state.
//!
//! The caller decodes the trapped HVC or SMC into an [`SmcccCall`], calls
//! [`handle`], writes [`SmcccOutcome::regs`] back into x0-x3 (only those:
//! [`SmcccOutcome::write_back`]) and carries out [`SmcccOutcome::action`].
//! Registers x4-x17 are never written, as SMCCC 1.1 requires of the callee.
//!
//! Decisions this module makes for every guest, whatever it sends:
//!
//! - A function ID nobody implements gets the SMCCC Unknown Function
//!   Identifier: -1 sign-extended into the whole of x0, for SMC32 and SMC64
//!   IDs alike (DEN 0028, "Unknown Function Identifier").
//! - An HVC or SMC with a non-zero immediate is not an SMCCC call (SMCCC
//!   requires the immediate to be 0); it is answered like an unknown function,
//!   x0 = -1, without looking at w0. Never UNDEF: the guest sees a normal
//!   failed call and keeps running.
//! - SMC32 IDs (bit 30 clear) take their arguments from w1-w7: the upper
//!   halves of x1-x7 are ignored. Their results are 32-bit values: a
//!   non-negative result is zero-extended into x0, a negative status is
//!   sign-extended so that -1 reads the same in w0 and x0.
//! - The vendor-specific hypervisor service (owning entity 6) is the
//!   project's hypercall ABI ([`super::hypercall`]); it is reached only by
//!   HVC, since an SMC addresses the secure monitor, and returns
//!   [`Action::Hypercall`] for the caller to dispatch. Standard hypervisor
//!   service calls (owning entity 5) are not implemented: NOT_SUPPORTED.
//! - Nothing is ever forwarded to the real firmware.
//! - Unused result registers among x1-x3 are set to 0, so a guest never reads
//!   back stale values it could mistake for results.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::mm::addr::{Ipa, IpaRange};

/// Function IDs, DEN 0022 table 5.1 and DEN 0028 section 7.
pub mod fid {
    /// SMCCC_VERSION.
    pub const SMCCC_VERSION: u32 = 0x8000_0000;
    /// SMCCC_ARCH_FEATURES.
    pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
    /// SMCCC_ARCH_SOC_ID.
    pub const SMCCC_ARCH_SOC_ID: u32 = 0x8000_0002;
    /// SMCCC_ARCH_WORKAROUND_1 (CVE-2017-5715).
    pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
    /// SMCCC_ARCH_WORKAROUND_2 (CVE-2018-3639).
    pub const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
    /// SMCCC_ARCH_WORKAROUND_3 (CVE-2022-23960).
    pub const SMCCC_ARCH_WORKAROUND_3: u32 = 0x8000_3FFF;

    /// PSCI_VERSION.
    pub const PSCI_VERSION: u32 = 0x8400_0000;
    /// CPU_SUSPEND, SMC32.
    pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
    /// CPU_SUSPEND, SMC64.
    pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON, SMC32.
    pub const CPU_ON_32: u32 = 0x8400_0003;
    /// CPU_ON, SMC64.
    pub const CPU_ON_64: u32 = 0xC400_0003;
    /// AFFINITY_INFO, SMC32.
    pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
    /// AFFINITY_INFO, SMC64.
    pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
    /// MIGRATE, SMC32 (not implemented: no trusted OS).
    pub const MIGRATE_32: u32 = 0x8400_0005;
    /// MIGRATE, SMC64 (not implemented: no trusted OS).
    pub const MIGRATE_64: u32 = 0xC400_0005;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// MIGRATE_INFO_UP_CPU, SMC32 (not implemented: no trusted OS).
    pub const MIGRATE_INFO_UP_CPU_32: u32 = 0x8400_0007;
    /// MIGRATE_INFO_UP_CPU, SMC64 (not implemented: no trusted OS).
    pub const MIGRATE_INFO_UP_CPU_64: u32 = 0xC400_0007;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const PSCI_FEATURES: u32 = 0x8400_000A;
    /// SYSTEM_SUSPEND, SMC32 (not implemented).
    pub const SYSTEM_SUSPEND_32: u32 = 0x8400_000E;
    /// SYSTEM_SUSPEND, SMC64 (not implemented).
    pub const SYSTEM_SUSPEND_64: u32 = 0xC400_000E;
    /// SYSTEM_RESET2, SMC32.
    pub const SYSTEM_RESET2_32: u32 = 0x8400_0012;
    /// SYSTEM_RESET2, SMC64.
    pub const SYSTEM_RESET2_64: u32 = 0xC400_0012;
}

/// PSCI return codes, DEN 0022 table 5.2. SMCCC_ARCH_FEATURES uses the same
/// 0 and -1.
pub mod ret {
    /// The call succeeded.
    pub const SUCCESS: i32 = 0;
    /// Function not implemented (also the SMCCC Unknown Function Identifier).
    pub const NOT_SUPPORTED: i32 = -1;
    /// A parameter is not valid.
    pub const INVALID_PARAMETERS: i32 = -2;
    /// The call is not allowed in the current state.
    pub const DENIED: i32 = -3;
    /// CPU_ON: the target is already on.
    pub const ALREADY_ON: i32 = -4;
    /// CPU_ON: a previous CPU_ON for the target is still pending.
    pub const ON_PENDING: i32 = -5;
    /// The implementation failed.
    pub const INTERNAL_FAILURE: i32 = -6;
    /// The target is not present.
    pub const NOT_PRESENT: i32 = -7;
    /// The target is disabled.
    pub const DISABLED: i32 = -8;
    /// CPU_ON / CPU_SUSPEND: the entry point address is not valid.
    pub const INVALID_ADDRESS: i32 = -9;
}

/// PSCI version reported: 1.1 (major in bits 31:16, minor in bits 15:0).
pub const PSCI_VERSION_1_1: u32 = 0x0001_0001;
/// SMCCC version reported: 1.1 (same encoding).
pub const SMCCC_VERSION_1_1: u32 = 0x0001_0001;
/// MIGRATE_INFO_TYPE answer: trusted OS not present or does not require migration.
pub const MIGRATE_INFO_TYPE_NOT_REQUIRED: u32 = 2;
/// AFFINITY_INFO answer: the affinity instance is on.
pub const AFFINITY_ON: i32 = 0;
/// AFFINITY_INFO answer: the affinity instance is off.
pub const AFFINITY_OFF: i32 = 1;
/// AFFINITY_INFO answer: a CPU_ON for the affinity instance is still pending.
pub const AFFINITY_ON_PENDING: i32 = 2;
/// SYSTEM_RESET2 architectural reset type 0: SYSTEM_WARM_RESET.
pub const SYSTEM_WARM_RESET: u32 = 0;

/// The affinity fields of MPIDR_EL1: Aff3 (39:32) and Aff2..Aff0 (23:0).
/// A CPU_ON or AFFINITY_INFO target with any other bit set is invalid.
pub const MPIDR_AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;

/// SMCCC function ID bit 31: fast call.
const FAST_CALL: u32 = 1 << 31;
/// SMCCC function ID bit 30: SMC64/HVC64 calling convention.
const SMC64: u32 = 1 << 30;
const OWNER_SHIFT: u32 = 24;
const OWNER_MASK: u32 = 0x3F;
/// Owning entity of the vendor-specific hypervisor service.
const OWNER_VENDOR_HYP: u32 = 6;

/// Which instruction made the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// HVC: addressed to the hypervisor.
    Hvc,
    /// SMC, trapped by HCR_EL2.TSC: addressed to the secure monitor.
    Smc,
}

/// A trapped SMCCC call: the registers as the guest left them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmcccCall {
    /// w0.
    pub function_id: u32,
    /// x1..x7.
    pub args: [u64; 7],
    /// HVC or SMC.
    pub conduit: Conduit,
    /// The instruction's 16-bit immediate (ESR_EL2.ISS bits 15:0).
    pub imm16: u16,
}

/// What the vcpu loop must do after writing the results back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Resume the guest.
    None,
    /// SYSTEM_OFF: stop the VM.
    SystemOff,
    /// SYSTEM_RESET or SYSTEM_RESET2 (warm): restart the VM from its boot state.
    SystemReset,
    /// CPU_ON accepted: start the vcpu with MPIDR `target_mpidr` at `entry`
    /// with x0 = `context_id`, as DEN 0022 section 6.4 describes. The state
    /// already records it as on; if the vcpu cannot be started the caller
    /// marks it off again with [`PsciState::set_power`].
    CpuOn {
        /// Affinity fields of the target's MPIDR.
        target_mpidr: u64,
        /// Entry point IPA (4-byte aligned, inside the entry range if one is set).
        entry: u64,
        /// Value for the target's x0.
        context_id: u64,
    },
    /// CPU_OFF: the calling vcpu stops. It is recorded as off; if no vcpu is
    /// left on the VM is effectively off.
    CpuOff,
    /// A call to the vendor-specific hypervisor service: decode it with
    /// [`super::hypercall::decode`]. No register has been computed.
    Hypercall,
}

/// The answer to an [`SmcccCall`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmcccOutcome {
    /// New values for x0..x3, or `None` to leave every register alone (the call
    /// does not return to the caller, or is dispatched elsewhere). No other
    /// register is ever written: x4-x17 stay as the guest left them.
    pub regs: Option<[u64; 4]>,
    /// What the vcpu loop does next.
    pub action: Action,
}

impl SmcccOutcome {
    /// Writes the results into a vcpu's general-purpose registers: x0..x3 only.
    pub fn write_back(&self, x: &mut [u64; 31]) {
        if let Some(regs) = self.regs {
            for (dst, src) in x.iter_mut().zip(regs) {
                *dst = src;
            }
        }
    }

    const fn returns(regs: [u64; 4]) -> Self {
        Self {
            regs: Some(regs),
            action: Action::None,
        }
    }
}

/// One vcpu as PSCI sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VcpuPower {
    /// Affinity fields of its MPIDR_EL1.
    pub mpidr: u64,
    /// Whether it is on (or being turned on).
    pub on: bool,
    /// Accepted by CPU_ON but not yet running guest code.
    pub pending: bool,
}

/// Most vcpus one VM may have.
pub const MAX_VCPUS: usize = crate::vm::config::MAX_VCPUS;

/// Why a vcpu could not be added to a [`PsciState`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciStateError {
    /// Already [`MAX_VCPUS`] vcpus.
    Full,
    /// Another vcpu has the same MPIDR.
    Duplicate,
    /// The MPIDR has bits outside [`MPIDR_AFFINITY_MASK`].
    BadMpidr,
}

/// The power state of a VM's vcpus and which of them is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsciState {
    vcpus: [VcpuPower; MAX_VCPUS],
    count: usize,
    current: usize,
    entry_range: Option<IpaRange>,
}

impl PsciState {
    /// A VM with one vcpu, on and calling.
    pub fn new(boot_mpidr: u64) -> Self {
        let mut vcpus = [VcpuPower::default(); MAX_VCPUS];
        vcpus[0] = VcpuPower {
            mpidr: boot_mpidr & MPIDR_AFFINITY_MASK,
            on: true,
            pending: false,
        };
        Self {
            vcpus,
            count: 1,
            current: 0,
            entry_range: None,
        }
    }

    /// Adds a powered-off vcpu that CPU_ON may start.
    pub fn add_vcpu(&mut self, mpidr: u64) -> Result<(), PsciStateError> {
        if mpidr & !MPIDR_AFFINITY_MASK != 0 {
            return Err(PsciStateError::BadMpidr);
        }
        if self.find(mpidr).is_some() {
            return Err(PsciStateError::Duplicate);
        }
        let slot = self.vcpus.get_mut(self.count).ok_or(PsciStateError::Full)?;
        *slot = VcpuPower {
            mpidr,
            on: false,
            pending: false,
        };
        self.count += 1;
        Ok(())
    }

    /// Restricts CPU_ON entry points to `range` (the guest's RAM); outside it
    /// CPU_ON answers INVALID_ADDRESS.
    pub fn set_entry_range(&mut self, range: IpaRange) {
        self.entry_range = Some(range);
    }

    /// Makes the vcpu with this MPIDR the caller of the next [`handle`].
    /// Returns false, changing nothing, if no vcpu has it.
    pub fn set_current(&mut self, mpidr: u64) -> bool {
        match self.find(mpidr) {
            Some(i) => {
                self.current = i;
                true
            }
            None => false,
        }
    }

    /// MPIDR affinity of the calling vcpu.
    pub fn current_mpidr(&self) -> u64 {
        self.vcpus.get(self.current).map_or(0, |v| v.mpidr)
    }

    /// Whether the vcpu with this MPIDR is on, or `None` if there is none.
    pub fn power(&self, mpidr: u64) -> Option<bool> {
        self.find(mpidr)
            .and_then(|i| self.vcpus.get(i))
            .map(|v| v.on)
    }

    /// Records the vcpu with this MPIDR as on (running) or off; false if
    /// there is none.
    pub fn set_power(&mut self, mpidr: u64, on: bool) -> bool {
        match self.find(mpidr).and_then(|i| self.vcpus.get_mut(i)) {
            Some(v) => {
                v.on = on;
                v.pending = false;
                true
            }
            None => false,
        }
    }

    /// The vcpu with this MPIDR, started by CPU_ON, runs guest code now: its
    /// CPU_ON is no longer pending. False if there is no such vcpu or it is off.
    pub fn mark_running(&mut self, mpidr: u64) -> bool {
        match self.find(mpidr).and_then(|i| self.vcpus.get_mut(i)) {
            Some(v) if v.on => {
                v.pending = false;
                true
            }
            _ => false,
        }
    }

    /// Whether a CPU_ON of the vcpu with this MPIDR is still pending.
    pub fn pending(&self, mpidr: u64) -> bool {
        self.find(mpidr)
            .and_then(|i| self.vcpus.get(i))
            .is_some_and(|v| v.on && v.pending)
    }

    /// The VM's vcpus.
    pub fn vcpus(&self) -> &[VcpuPower] {
        self.vcpus.get(..self.count).unwrap_or(&[])
    }

    /// Whether any vcpu is on.
    pub fn any_on(&self) -> bool {
        self.vcpus().iter().any(|v| v.on)
    }

    fn find(&self, mpidr: u64) -> Option<usize> {
        if mpidr & !MPIDR_AFFINITY_MASK != 0 {
            return None;
        }
        self.vcpus().iter().position(|v| v.mpidr == mpidr)
    }

    fn entry_ok(&self, entry: u64) -> bool {
        // A64 instructions are 4-byte aligned; the entry must be guest RAM.
        entry.is_multiple_of(4) && self.entry_range.is_none_or(|r| r.contains(Ipa::new(entry)))
    }
}

/// Whether `function_id` uses the SMC64/HVC64 convention.
pub const fn is_smc64(function_id: u32) -> bool {
    function_id & SMC64 != 0
}

/// Whether `function_id` is a fast call of the vendor-specific hypervisor
/// service: 0x86000000-0x8600FFFF (SMC32) or 0xC6000000-0xC600FFFF (SMC64).
pub const fn is_vendor_hyp(function_id: u32) -> bool {
    function_id & FAST_CALL != 0
        && (function_id >> OWNER_SHIFT) & OWNER_MASK == OWNER_VENDOR_HYP
        && function_id & 0x00FF_0000 == 0
}

/// A 32-bit result (status or value) as x0 holds it: sign-extended, which for
/// non-negative values is the zero extension of the w0 write.
const fn word(value: i32) -> u64 {
    value as i64 as u64
}

const fn status(code: i32) -> SmcccOutcome {
    SmcccOutcome::returns([word(code), 0, 0, 0])
}

const fn not_supported() -> SmcccOutcome {
    status(ret::NOT_SUPPORTED)
}

/// Answers one SMCCC call. Total over every input: never panics, whatever
/// the guest put in its registers.
pub fn handle(call: &SmcccCall, state: &mut PsciState) -> SmcccOutcome {
    if call.imm16 != 0 {
        return not_supported();
    }
    let id = call.function_id;
    let args = if is_smc64(id) {
        call.args
    } else {
        call.args.map(|a| a & 0xFFFF_FFFF)
    };
    let [a1, a2, a3, ..] = args;
    match id {
        fid::SMCCC_VERSION => status(SMCCC_VERSION_1_1 as i32),
        fid::SMCCC_ARCH_FEATURES => status(arch_features(a1 as u32)),
        fid::PSCI_VERSION => status(PSCI_VERSION_1_1 as i32),
        fid::PSCI_FEATURES => status(psci_features(a1 as u32)),
        // Treated like WFI: any power state may end at once (DEN 0022 5.4.2
        // allows a standby or retention state to return early), so returning
        // SUCCESS without suspending is a valid wake-up.
        fid::CPU_SUSPEND_32 | fid::CPU_SUSPEND_64 => status(ret::SUCCESS),
        fid::CPU_OFF => cpu_off(state),
        fid::CPU_ON_32 | fid::CPU_ON_64 => cpu_on(state, a1, a2, a3),
        fid::AFFINITY_INFO_32 | fid::AFFINITY_INFO_64 => status(affinity_info(state, a1, a2)),
        fid::MIGRATE_INFO_TYPE => status(MIGRATE_INFO_TYPE_NOT_REQUIRED as i32),
        fid::SYSTEM_OFF => SmcccOutcome {
            regs: None,
            action: Action::SystemOff,
        },
        fid::SYSTEM_RESET => SmcccOutcome {
            regs: None,
            action: Action::SystemReset,
        },
        fid::SYSTEM_RESET2_32 | fid::SYSTEM_RESET2_64 => system_reset2(a1 as u32),
        _ if is_vendor_hyp(id) && call.conduit == Conduit::Hvc => SmcccOutcome {
            regs: None,
            action: Action::Hypercall,
        },
        _ => not_supported(),
    }
}

/// SMCCC_ARCH_FEATURES (DEN 0028 7.3). The Spectre workarounds are not
/// offered: their calls are not implemented, so the guest must not make them.
fn arch_features(queried: u32) -> i32 {
    match queried {
        fid::SMCCC_VERSION | fid::SMCCC_ARCH_FEATURES => ret::SUCCESS,
        _ => ret::NOT_SUPPORTED,
    }
}

/// PSCI_FEATURES (DEN 0022 5.15): 0 for each implemented function. For
/// CPU_SUSPEND the 0 is also its feature flags: original power_state format
/// (bit 1 clear) and platform-coordinated mode only (bit 0 clear).
fn psci_features(queried: u32) -> i32 {
    match queried {
        fid::PSCI_VERSION
        | fid::CPU_SUSPEND_32
        | fid::CPU_SUSPEND_64
        | fid::CPU_OFF
        | fid::CPU_ON_32
        | fid::CPU_ON_64
        | fid::AFFINITY_INFO_32
        | fid::AFFINITY_INFO_64
        | fid::MIGRATE_INFO_TYPE
        | fid::SYSTEM_OFF
        | fid::SYSTEM_RESET
        | fid::SYSTEM_RESET2_32
        | fid::SYSTEM_RESET2_64
        | fid::PSCI_FEATURES
        | fid::SMCCC_VERSION => ret::SUCCESS,
        _ => ret::NOT_SUPPORTED,
    }
}

/// CPU_OFF (DEN 0022 5.5): the caller powers down and does not return. With
/// no trusted OS it can never be DENIED.
fn cpu_off(state: &mut PsciState) -> SmcccOutcome {
    let me = state.current_mpidr();
    state.set_power(me, false);
    SmcccOutcome {
        regs: None,
        action: Action::CpuOff,
    }
}

/// CPU_ON (DEN 0022 5.6).
fn cpu_on(state: &mut PsciState, target: u64, entry: u64, context_id: u64) -> SmcccOutcome {
    let code = match state.power(target) {
        None => ret::INVALID_PARAMETERS,
        Some(true) if state.pending(target) => ret::ON_PENDING,
        Some(true) => ret::ALREADY_ON,
        Some(false) if !state.entry_ok(entry) => ret::INVALID_ADDRESS,
        Some(false) => {
            state.set_power(target, true);
            if let Some(v) = state.find(target).and_then(|i| state.vcpus.get_mut(i)) {
                v.pending = true;
            }
            return SmcccOutcome {
                regs: Some([word(ret::SUCCESS), 0, 0, 0]),
                action: Action::CpuOn {
                    target_mpidr: target,
                    entry,
                    context_id,
                },
            };
        }
    };
    status(code)
}

/// AFFINITY_INFO (DEN 0022 5.7). From PSCI 1.0 only lowest_affinity_level 0
/// must be supported and higher levels are discouraged; this implementation
/// answers only level 0 and INVALID_PARAMETERS for any other.
fn affinity_info(state: &PsciState, target: u64, lowest_level: u64) -> i32 {
    if lowest_level != 0 {
        return ret::INVALID_PARAMETERS;
    }
    match state.power(target) {
        Some(true) if state.pending(target) => AFFINITY_ON_PENDING,
        Some(true) => AFFINITY_ON,
        Some(false) => AFFINITY_OFF,
        None => ret::INVALID_PARAMETERS,
    }
}

/// SYSTEM_RESET2 (DEN 0022 5.20): only the architectural warm reset. Vendor
/// reset types (bit 31 set) and reserved architectural types are refused
/// with INVALID_PARAMETERS as the specification asks.
fn system_reset2(reset_type: u32) -> SmcccOutcome {
    if reset_type == SYSTEM_WARM_RESET {
        SmcccOutcome {
            regs: None,
            action: Action::SystemReset,
        }
    } else {
        status(ret::INVALID_PARAMETERS)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use super::*;

    const BOOT: u64 = 0x8000_0000; // MPIDR_EL1 with the RES1 bit 31 set.
    const NEG1: u64 = u64::MAX;

    fn call(function_id: u32, args: &[u64]) -> SmcccCall {
        let mut a = [0u64; 7];
        a[..args.len()].copy_from_slice(args);
        SmcccCall {
            function_id,
            args: a,
            conduit: Conduit::Hvc,
            imm16: 0,
        }
    }

    fn one() -> PsciState {
        PsciState::new(BOOT)
    }

    fn x0(out: &SmcccOutcome) -> u64 {
        out.regs.expect("call returns")[0]
    }

    fn run(id: u32, args: &[u64]) -> SmcccOutcome {
        handle(&call(id, args), &mut one())
    }

    #[test]
    fn versions() {
        assert_eq!(
            run(fid::PSCI_VERSION, &[]),
            SmcccOutcome::returns([0x10001, 0, 0, 0])
        );
        assert_eq!(
            run(fid::SMCCC_VERSION, &[]),
            SmcccOutcome::returns([0x10001, 0, 0, 0])
        );
    }

    #[test]
    fn the_boot_mpidr_loses_its_res1_bit() {
        assert_eq!(one().current_mpidr(), 0);
        assert_eq!(PsciState::new(0x8100_0203).current_mpidr(), 0x203);
    }

    #[test]
    fn psci_features_lists_exactly_the_implemented_functions() {
        let implemented = [
            fid::PSCI_VERSION,
            fid::CPU_SUSPEND_32,
            fid::CPU_SUSPEND_64,
            fid::CPU_OFF,
            fid::CPU_ON_32,
            fid::CPU_ON_64,
            fid::AFFINITY_INFO_32,
            fid::AFFINITY_INFO_64,
            fid::MIGRATE_INFO_TYPE,
            fid::SYSTEM_OFF,
            fid::SYSTEM_RESET,
            fid::SYSTEM_RESET2_32,
            fid::SYSTEM_RESET2_64,
            fid::PSCI_FEATURES,
            fid::SMCCC_VERSION,
        ];
        for f in implemented {
            assert_eq!(x0(&run(fid::PSCI_FEATURES, &[f as u64])), 0, "{f:#x}");
        }
        // PSCI_FEATURES is SMC32: its negative result is a sign-extended word.
        for f in [
            fid::MIGRATE_32,
            fid::MIGRATE_64,
            fid::MIGRATE_INFO_UP_CPU_32,
            fid::MIGRATE_INFO_UP_CPU_64,
            fid::SYSTEM_SUSPEND_32,
            fid::SYSTEM_SUSPEND_64,
            0x8400_000B, // CPU_FREEZE
            0x8400_0013, // MEM_PROTECT
            fid::SMCCC_ARCH_FEATURES,
            fid::SMCCC_ARCH_WORKAROUND_1,
            0xC600_0001,
            1337,
        ] {
            assert_eq!(x0(&run(fid::PSCI_FEATURES, &[f as u64])), NEG1, "{f:#x}");
        }
        // The queried ID is a w-register: upper bits of x1 are ignored.
        assert_eq!(x0(&run(fid::PSCI_FEATURES, &[0xDEAD_0000_8400_0000])), 0);
    }

    #[test]
    fn arch_features() {
        for (f, want) in [
            (fid::SMCCC_VERSION, 0),
            (fid::SMCCC_ARCH_FEATURES, 0),
            (fid::SMCCC_ARCH_WORKAROUND_1, NEG1),
            (fid::SMCCC_ARCH_WORKAROUND_2, NEG1),
            (fid::SMCCC_ARCH_WORKAROUND_3, NEG1),
            (fid::SMCCC_ARCH_SOC_ID, NEG1),
            (fid::PSCI_VERSION, NEG1),
        ] {
            assert_eq!(
                x0(&run(fid::SMCCC_ARCH_FEATURES, &[f as u64])),
                want,
                "{f:#x}"
            );
        }
    }

    #[test]
    fn unimplemented_calls_are_sign_extended_minus_one() {
        for f in [
            fid::SMCCC_ARCH_SOC_ID,
            fid::SMCCC_ARCH_WORKAROUND_1,
            fid::SMCCC_ARCH_WORKAROUND_2,
            fid::SMCCC_ARCH_WORKAROUND_3,
            fid::MIGRATE_32,
            fid::MIGRATE_64,
            fid::MIGRATE_INFO_UP_CPU_32,
            fid::MIGRATE_INFO_UP_CPU_64,
            fid::SYSTEM_SUSPEND_32,
            1337,
            0,
            u32::MAX,
            0x8200_0000, // SiP
            0x8300_0000, // OEM
            0x8500_0000, // standard hypervisor service, SMC32
            0xC500_FF01, // standard hypervisor service, SMC64
            0xB000_0000, // trusted OS
            0x0400_0000, // PSCI range as a yielding call
            0x8401_0000, // PSCI function with reserved bits 23:16 set
            0x8601_0000, // vendor hypervisor with reserved bits set
        ] {
            assert_eq!(
                run(f, &[1, 2, 3]),
                SmcccOutcome::returns([NEG1, 0, 0, 0]),
                "{f:#x}"
            );
        }
    }

    #[test]
    fn non_zero_immediate_is_not_an_smccc_call() {
        let mut state = one();
        for id in [
            fid::PSCI_VERSION,
            fid::SYSTEM_OFF,
            fid::CPU_OFF,
            0xC600_0001,
        ] {
            let mut c = call(id, &[]);
            c.imm16 = 1;
            assert_eq!(
                handle(&c, &mut state),
                SmcccOutcome::returns([NEG1, 0, 0, 0])
            );
            c.conduit = Conduit::Smc;
            c.imm16 = 0xFFFF;
            assert_eq!(
                handle(&c, &mut state),
                SmcccOutcome::returns([NEG1, 0, 0, 0])
            );
        }
        assert!(state.any_on(), "a refused CPU_OFF changed nothing");
    }

    #[test]
    fn smc_conduit_reaches_psci() {
        let mut c = call(fid::PSCI_VERSION, &[]);
        c.conduit = Conduit::Smc;
        assert_eq!(x0(&handle(&c, &mut one())), 0x10001);
    }

    #[test]
    fn vendor_hypervisor_range_is_handed_to_the_hypercall_layer() {
        for f in [
            0x8600_0000,
            0x8600_FF00,
            0x8600_FF01,
            0x8600_FFFF,
            0xC600_0000,
            0xC600_0004,
            0xC600_FFFF,
        ] {
            let out = run(f, &[1, 2, 3]);
            assert_eq!(
                out,
                SmcccOutcome {
                    regs: None,
                    action: Action::Hypercall
                },
                "{f:#x}"
            );
            let mut c = call(f, &[]);
            c.conduit = Conduit::Smc;
            assert_eq!(handle(&c, &mut one()), not_supported(), "SMC {f:#x}");
        }
        assert!(
            !is_vendor_hyp(0x0600_0000),
            "yielding calls are not hypercalls"
        );
    }

    #[test]
    fn cpu_suspend_returns_success() {
        for f in [fid::CPU_SUSPEND_32, fid::CPU_SUSPEND_64] {
            assert_eq!(
                run(f, &[0x0101_0000, 0x4008_0000, 7]),
                SmcccOutcome::returns([0; 4])
            );
        }
    }

    #[test]
    fn cpu_off_marks_the_caller_off() {
        let mut s = one();
        s.add_vcpu(1).unwrap();
        s.set_power(1, true);
        assert!(s.set_current(1));
        let out = handle(&call(fid::CPU_OFF, &[]), &mut s);
        assert_eq!(
            out,
            SmcccOutcome {
                regs: None,
                action: Action::CpuOff
            }
        );
        assert_eq!(s.power(1), Some(false));
        assert_eq!(s.power(0), Some(true));
        assert!(s.set_current(0));
        handle(&call(fid::CPU_OFF, &[]), &mut s);
        assert!(!s.any_on());
    }

    #[test]
    fn cpu_on_single_vcpu() {
        for f in [fid::CPU_ON_32, fid::CPU_ON_64] {
            assert_eq!(x0(&run(f, &[0, 0x4008_0000, 0])), word(ret::ALREADY_ON));
            assert_eq!(
                x0(&run(f, &[1, 0x4008_0000, 0])),
                word(ret::INVALID_PARAMETERS)
            );
            assert_eq!(
                x0(&run(f, &[0x100, 0x4008_0000, 0])),
                word(ret::INVALID_PARAMETERS)
            );
        }
        // Bits outside the affinity fields never match a vcpu.
        assert_eq!(
            x0(&run(fid::CPU_ON_64, &[1 << 24, 0x4008_0000, 0])),
            word(ret::INVALID_PARAMETERS)
        );
        assert_eq!(
            x0(&run(fid::CPU_ON_64, &[1 << 31, 0x4008_0000, 0])),
            word(ret::INVALID_PARAMETERS)
        );
        // SMC32 takes w1: the upper half of x1 is not part of the target.
        assert_eq!(
            x0(&run(fid::CPU_ON_32, &[0xFF_0000_0000, 0x4008_0000, 0])),
            word(ret::ALREADY_ON)
        );
        assert_eq!(
            x0(&run(fid::CPU_ON_64, &[0xFF_0000_0000, 0x4008_0000, 0])),
            word(ret::INVALID_PARAMETERS)
        );
    }

    fn two() -> PsciState {
        let mut s = one();
        s.add_vcpu(1).unwrap();
        s.set_entry_range(IpaRange::new(Ipa::new(0x4000_0000), 0x1000_0000).unwrap());
        s
    }

    #[test]
    fn cpu_on_starts_a_powered_off_vcpu_once() {
        let mut s = two();
        let out = handle(&call(fid::CPU_ON_64, &[1, 0x4008_0000, 0xC0FFEE]), &mut s);
        assert_eq!(out.regs, Some([0; 4]));
        assert_eq!(
            out.action,
            Action::CpuOn {
                target_mpidr: 1,
                entry: 0x4008_0000,
                context_id: 0xC0FFEE
            }
        );
        assert_eq!(s.power(1), Some(true));
        // Accepted, not yet running: a second CPU_ON is ON_PENDING, and so
        // is AFFINITY_INFO, until the run loop reports the vcpu running.
        let again = handle(&call(fid::CPU_ON_64, &[1, 0x4008_0000, 0]), &mut s);
        assert_eq!(again, status(ret::ON_PENDING));
        assert_eq!(
            x0(&handle(&call(fid::AFFINITY_INFO_64, &[1, 0]), &mut s)),
            AFFINITY_ON_PENDING as u64
        );
        assert!(s.mark_running(1));
        let again = handle(&call(fid::CPU_ON_64, &[1, 0x4008_0000, 0]), &mut s);
        assert_eq!(again, status(ret::ALREADY_ON));
        assert_eq!(
            x0(&handle(&call(fid::AFFINITY_INFO_64, &[1, 0]), &mut s)),
            AFFINITY_ON as u64
        );
        // A failed start turns it off again; CPU_ON may then retry.
        assert!(s.set_power(1, false));
        assert!(!s.pending(1));
        assert_eq!(
            x0(&handle(&call(fid::AFFINITY_INFO_64, &[1, 0]), &mut s)),
            AFFINITY_OFF as u64
        );
        assert!(matches!(
            handle(&call(fid::CPU_ON_64, &[1, 0x4008_0000, 0]), &mut s).action,
            Action::CpuOn { .. }
        ));
        // Off vcpus cannot be marked running.
        assert!(s.set_power(1, false));
        assert!(!s.mark_running(1));
        assert!(!s.mark_running(7));
    }

    #[test]
    fn cpu_on_checks_the_entry_point() {
        let mut s = two();
        for bad in [0x4008_0002, 0x3FFF_FFFC, 0x5000_0000, u64::MAX - 3] {
            let out = handle(&call(fid::CPU_ON_64, &[1, bad, 0]), &mut s);
            assert_eq!(out, status(ret::INVALID_ADDRESS), "{bad:#x}");
            assert_eq!(s.power(1), Some(false));
        }
        // SMC32: entry and context are w-registers.
        let out = handle(
            &call(fid::CPU_ON_32, &[1, 0x1_4008_0000, 0xAB_0000_0001]),
            &mut s,
        );
        assert_eq!(
            out.action,
            Action::CpuOn {
                target_mpidr: 1,
                entry: 0x4008_0000,
                context_id: 1
            }
        );
    }

    #[test]
    fn affinity_info() {
        let mut s = two();
        for f in [fid::AFFINITY_INFO_32, fid::AFFINITY_INFO_64] {
            assert_eq!(x0(&handle(&call(f, &[0, 0]), &mut s)), AFFINITY_ON as u64);
            assert_eq!(x0(&handle(&call(f, &[1, 0]), &mut s)), AFFINITY_OFF as u64);
            assert_eq!(
                x0(&handle(&call(f, &[2, 0]), &mut s)),
                word(ret::INVALID_PARAMETERS)
            );
            for level in [1, 2, 3, 4, u32::MAX as u64] {
                assert_eq!(
                    x0(&handle(&call(f, &[0, level]), &mut s)),
                    word(ret::INVALID_PARAMETERS)
                );
            }
        }
        // SMC32: w2 = 0 even though x2 is not.
        assert_eq!(
            x0(&handle(&call(fid::AFFINITY_INFO_32, &[0, 1 << 32]), &mut s)),
            0
        );
        assert_eq!(
            x0(&handle(&call(fid::AFFINITY_INFO_64, &[0, 1 << 32]), &mut s)),
            word(ret::INVALID_PARAMETERS)
        );
    }

    #[test]
    fn migrate_info_type() {
        assert_eq!(
            run(fid::MIGRATE_INFO_TYPE, &[]),
            SmcccOutcome::returns([2, 0, 0, 0])
        );
    }

    #[test]
    fn system_off_and_reset() {
        assert_eq!(
            run(fid::SYSTEM_OFF, &[]),
            SmcccOutcome {
                regs: None,
                action: Action::SystemOff
            }
        );
        assert_eq!(
            run(fid::SYSTEM_RESET, &[]),
            SmcccOutcome {
                regs: None,
                action: Action::SystemReset
            }
        );
        for f in [fid::SYSTEM_RESET2_32, fid::SYSTEM_RESET2_64] {
            assert_eq!(run(f, &[0, 0]).action, Action::SystemReset);
            assert_eq!(run(f, &[1, 0]), status(ret::INVALID_PARAMETERS));
            assert_eq!(run(f, &[0x8000_0000, 0]), status(ret::INVALID_PARAMETERS));
        }
        // reset_type is a 32-bit parameter in both conventions.
        assert_eq!(
            run(fid::SYSTEM_RESET2_64, &[1 << 32, 0]).action,
            Action::SystemReset
        );
    }

    #[test]
    fn return_codes_match_the_specification() {
        assert_eq!(
            [
                ret::SUCCESS,
                ret::NOT_SUPPORTED,
                ret::INVALID_PARAMETERS,
                ret::DENIED,
                ret::ALREADY_ON,
                ret::ON_PENDING,
                ret::INTERNAL_FAILURE,
                ret::NOT_PRESENT,
                ret::DISABLED,
                ret::INVALID_ADDRESS
            ],
            [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]
        );
        assert_eq!(word(ret::NOT_SUPPORTED), u64::MAX);
        assert_eq!(word(ret::INVALID_ADDRESS), (-9i64) as u64);
    }

    #[test]
    fn state_bookkeeping() {
        let mut s = one();
        assert_eq!(s.add_vcpu(0), Err(PsciStateError::Duplicate));
        assert_eq!(s.add_vcpu(1 << 24), Err(PsciStateError::BadMpidr));
        for i in 1..MAX_VCPUS as u64 {
            s.add_vcpu(i).unwrap();
        }
        assert_eq!(s.add_vcpu(0x100), Err(PsciStateError::Full));
        assert_eq!(s.vcpus().len(), MAX_VCPUS);
        assert!(!s.set_current(0x100));
        assert!(!s.set_power(0x100, true));
        assert_eq!(s.power(1 << 40), None);
    }

    /// xorshift64*: deterministic pseudo-random inputs.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        seed.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    #[test]
    fn random_calls_never_panic_and_only_touch_x0_to_x3() {
        let mut seed = 0x1234_5678_9ABC_DEF0;
        let mut state = two();
        state.add_vcpu(0x0100).unwrap();
        let known = [
            fid::PSCI_VERSION,
            fid::CPU_ON_64,
            fid::CPU_ON_32,
            fid::AFFINITY_INFO_64,
            fid::PSCI_FEATURES,
            fid::SMCCC_ARCH_FEATURES,
            fid::SYSTEM_RESET2_64,
            fid::CPU_SUSPEND_64,
        ];
        for i in 0..200_000u64 {
            let r = rng(&mut seed);
            let function_id = match i % 4 {
                0 => r as u32,
                1 => known[(r % known.len() as u64) as usize],
                2 => 0x8400_0000 | (r as u32 & 0x4000_001F),
                _ => 0x8000_0000 | (r as u32 & 0xFFFF),
            };
            let mut args = [0u64; 7];
            for a in &mut args {
                *a = match rng(&mut seed) % 3 {
                    0 => rng(&mut seed),
                    1 => rng(&mut seed) % 4,
                    _ => 0x4000_0000 + (rng(&mut seed) % 0x1000_0000),
                };
            }
            let c = SmcccCall {
                function_id,
                args,
                conduit: if r & 1 << 40 != 0 {
                    Conduit::Smc
                } else {
                    Conduit::Hvc
                },
                imm16: if r & 0xF << 41 == 0 {
                    (r >> 48) as u16
                } else {
                    0
                },
            };
            let out = handle(&c, &mut state);
            let mut x: [u64; 31] = core::array::from_fn(|n| 0xA5A5_0000 + n as u64);
            let before = x;
            out.write_back(&mut x);
            assert_eq!(x[4..], before[4..], "x4-x30 untouched for {function_id:#x}");
            if out.action == Action::CpuOff {
                // Keep someone calling.
                let me = state.current_mpidr();
                state.set_power(me, true);
            }
            if let Some(regs) = out.regs {
                if !is_smc64(function_id) {
                    // SMC32 results are words: zero- or sign-extended.
                    for v in regs {
                        assert!(
                            v >> 32 == 0 || v >> 31 == 0x1_FFFF_FFFF,
                            "{function_id:#x} -> {v:#x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn write_back_sets_exactly_x0_to_x3() {
        let mut x = [7u64; 31];
        SmcccOutcome::returns([1, 2, 3, 4]).write_back(&mut x);
        assert_eq!(x[..5], [1, 2, 3, 4, 7]);
        let mut y = [7u64; 31];
        SmcccOutcome {
            regs: None,
            action: Action::SystemOff,
        }
        .write_back(&mut y);
        assert_eq!(y, [7u64; 31]);
    }
}
