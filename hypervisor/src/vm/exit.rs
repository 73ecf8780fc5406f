//! The vcpu exit handler: the saved syndrome decoded once into an exit, one
//! arm per exception class, and the guest's registers updated in place.
//!
//! Everything here is pure: what needs an instruction (reading the guest's
//! EL1 vector state, writing the injected exception's registers, `AT`, set/way
//! maintenance) goes through [`GuestArch`], which the arch layer implements
//! with real instructions and the host tests with a recording fake. What a
//! guest does may end its VM; it never panics the hypervisor
//! (`../shared/docs/hostile-guest.md`, items 1-18).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::arch::aarch64::esr::{
    decode, DataAbortIss, Decoded, Direction, Esr, FaultStatus, MmioAccess, SysRegEncoding,
    SysRegIss,
};
use alloc::sync::Arc;

use spin::Mutex;

use crate::devices::mmio::{BusAccess, DispatchResult, Effects, MmioBus, VcpuId};
use crate::mm::addr::Ipa;
use crate::vm::hypercall::{
    self, ExitCounter, ExitCounters, Hypercall, HypercallError, Stage2Info,
};
use crate::vm::inject::{self, fsc, GuestState, Injection};
use crate::vm::psci::{self, Action, Conduit, PsciState, SmcccCall};
use crate::vm::step;
use crate::vm::vcpu::GuestRegs;

/// The instructions the exit handler needs, supplied by the arch layer.
pub trait GuestArch {
    /// The guest's VBAR_EL1 and SCTLR_EL1, to deliver an injected exception.
    fn el1_vector_state(&mut self) -> (u64, u64);
    /// Writes ESR_EL1, FAR_EL1 (when given), SPSR_EL1 and ELR_EL1.
    fn write_el1_exception(&mut self, esr: u64, far: Option<u64>, spsr: u64, elr: u64);
    /// `AT S12E1R` (or `S12E1W`) of a guest virtual address, returning
    /// PAR_EL1; the guest's own PAR_EL1 must be left as it was.
    fn translate_guest_va(&mut self, va: u64, write: bool) -> u64;
    /// `DC CISW` with a guest's set/way operand: clean and invalidate, which
    /// never discards data another owner wrote.
    fn clean_invalidate_set_way(&mut self, operand: u64);
}

/// What the VM knows about its own stage 2, for the hypercalls that report it.
pub trait Stage2Query {
    /// What is mapped at `ipa`, with which attributes.
    fn stage2_info(&self, ipa: Ipa) -> Stage2Info;
    /// The physical address of a passed-through BAR now and at boot.
    fn bar_check(&self, bdf: u16, bar: u8) -> Option<(u64, u64)>;
    /// A stage-2 translation fault at `ipa`: if it is guest RAM not yet in
    /// stage 2, put it there (zeroed) and say so, and the guest retries the
    /// access. Without lazily populated RAM, nothing is.
    fn fault_in(&self, ipa: Ipa) -> bool {
        let _ = ipa;
        false
    }
}

/// What the run loop does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Run the guest again.
    Resume,
    /// The guest powered off (PSCI SYSTEM_OFF, or CPU_OFF of its last vcpu).
    PowerOff,
    /// PSCI CPU_OFF: this vCPU stops; others are still on.
    CpuOff,
    /// PSCI CPU_ON accepted: the run loop starts the target vCPU, and on
    /// failure marks it off and answers INTERNAL_FAILURE in the caller's x0
    /// (already SUCCESS).
    CpuOn {
        /// Affinity of the target's (virtual) MPIDR.
        target_mpidr: u64,
        /// Entry point IPA, checked to be in guest RAM.
        entry: u64,
        /// The target's x0.
        context_id: u64,
    },
    /// The guest asked for a reset (PSCI SYSTEM_RESET).
    Reset,
    /// The VM cannot go on; the reason is for the log. The hypervisor stays up.
    Stop(&'static str),
}

/// What all vCPUs of a VM share for their exits. The bus locks each device
/// per access; the PSCI table is locked for one call at a time. Neither lock
/// is ever held across guest entry.
pub struct VmExitShared {
    /// Emulated devices.
    pub bus: MmioBus,
    /// PSCI power state of every vCPU.
    pub psci: Mutex<PsciState>,
    /// One past the highest IPA stage 2 translates.
    pub ipa_limit: u64,
}

impl VmExitShared {
    /// The shared exit state of a VM with these devices, vCPUs and IPA size.
    pub fn new(bus: MmioBus, psci: PsciState, ipa_bits: u32) -> Self {
        Self {
            bus,
            psci: Mutex::new(psci),
            ipa_limit: 1u64.checked_shl(ipa_bits).unwrap_or(u64::MAX),
        }
    }
}

/// One vCPU's exit state: its own counters and pending effects, and the
/// VM's shared part.
pub struct ExitState {
    /// What the VM's vCPUs share.
    pub shared: Arc<VmExitShared>,
    /// Which vCPU this is.
    pub vcpu: VcpuId,
    /// Affinity of its virtual MPIDR, as the PSCI table knows it.
    pub mpidr: u64,
    /// Exit counters, readable through a hypercall.
    pub counters: ExitCounters,
    /// What the last exit's device accesses asked of the VM; the run loop
    /// applies and clears them before the vCPU resumes.
    pub effects: Effects,
    no_syndrome_logged: bool,
}

impl ExitState {
    /// State for the boot vCPU of a VM with these devices, vcpus and IPA
    /// size (its MPIDR is the PSCI table's first).
    pub fn new(bus: MmioBus, psci: PsciState, ipa_bits: u32) -> Self {
        let mpidr = psci.current_mpidr();
        Self::for_vcpu(
            Arc::new(VmExitShared::new(bus, psci, ipa_bits)),
            VcpuId(0),
            mpidr,
        )
    }

    /// State for vCPU `vcpu` (MPIDR affinity `mpidr`) of a VM.
    pub fn for_vcpu(shared: Arc<VmExitShared>, vcpu: VcpuId, mpidr: u64) -> Self {
        Self {
            shared,
            vcpu,
            mpidr,
            counters: ExitCounters::default(),
            effects: Effects::new(),
            no_syndrome_logged: false,
        }
    }
}

/// ESR_EL2.EC: bits [31:26].
const ESR_EC_SHIFT: u64 = 26;
const ESR_EC_MASK: u64 = 0x3f;
/// EC of an HVC from AArch64 (Arm ARM D23.2, "ESR_EL2").
const EC_HVC64: u64 = 0x16;
/// ESR_EL2.EC of a data abort from a lower exception level.
const EC_DABT_LOWER: u64 = 0x24;

/// The faulting IPA of a stage-2 abort: HPFAR_EL2.FIPA gives bits 47:12,
/// FAR_EL2 the offset in the page (Arm ARM D23.2, "HPFAR_EL2").
pub fn fault_ipa(hpfar: u64, far: u64) -> Ipa {
    let fipa = (hpfar >> 4) & ((1 << 44) - 1);
    Ipa::new((fipa << 12) | (far & 0xfff))
}

/// Handles one exit recorded in `regs`.
///
/// HVCs to the hypervisor's own service, the commonest deliberate exit, take
/// a short path: the class comes straight from ESR_EL2.EC and the immediate
/// from ISS[15:0], as `decode` would give them, and the call goes to the
/// hypercall handler without the PSCI dispatcher (which would forward it
/// untouched) or the general handler's frame.
#[inline]
pub fn handle_exit(
    regs: &mut GuestRegs,
    vm: &mut ExitState,
    arch: &mut impl GuestArch,
    s2: &impl Stage2Query,
) -> Outcome {
    vm.counters.bump(ExitCounter::Total);
    if regs.vector == 8 && (regs.esr >> ESR_EC_SHIFT) & ESR_EC_MASK == EC_HVC64 {
        vm.counters.bump(ExitCounter::Hvc);
        let imm16 = regs.esr as u16;
        let function_id = regs.x.first().copied().unwrap_or(0) as u32;
        if imm16 == 0 && psci::is_vendor_hyp(function_id) {
            own_hypercall(regs, function_id, vm, arch, s2);
            // HVC's preferred return address is the next instruction already.
            return Outcome::Resume;
        }
        return smccc(regs, vm, arch, s2, Conduit::Hvc, imm16);
    }
    if regs.vector == 8 && (regs.esr >> ESR_EC_SHIFT) & ESR_EC_MASK == EC_DABT_LOWER {
        // Emulated MMIO is the other hot exit: straight to the data-abort
        // handler, without decoding the syndrome into every class.
        return data_abort(
            regs,
            vm,
            arch,
            s2,
            DataAbortIss::new(Esr::new(regs.esr).iss()),
        );
    }
    handle_other_exit(regs, vm, arch, s2)
}

/// A call to the hypervisor's own service: arguments read in place, x0-x3
/// written with the answer.
#[inline(never)]
fn own_hypercall(
    regs: &mut GuestRegs,
    function_id: u32,
    vm: &ExitState,
    arch: &mut impl GuestArch,
    s2: &impl Stage2Query,
) {
    let mut args = [0u64; 7];
    if let Some(x1_x7) = regs.x.get(1..8) {
        args.copy_from_slice(x1_x7);
    }
    let values = hypercall(function_id, &args, Conduit::Hvc, vm, arch, s2);
    for (dst, src) in regs.x.iter_mut().zip(values) {
        *dst = src;
    }
}

/// A data abort from the guest. In this order, as KVM's
/// `kvm_handle_guest_abort` has it: an external abort routed here by
/// HCR_EL2.TEA goes back to the guest as it was (HPFAR_EL2 is not valid for
/// it, so nothing is emulated); a fault on the guest's own stage-1 table walk
/// aborts, also for AT and DC by VA (CM set: an `AT S1E1R` that skipped would
/// leave a stale PAR_EL1); cache maintenance on a hole is skipped; an address
/// beyond the IPA size aborts; anything else is an MMIO access to emulate (or
/// abort).
fn data_abort(
    regs: &mut GuestRegs,
    vm: &mut ExitState,
    arch: &mut impl GuestArch,
    s2: &impl Stage2Query,
    iss: DataAbortIss,
) -> Outcome {
    vm.counters.bump(ExitCounter::DataAbort);
    let ipa = fault_ipa(regs.hpfar, regs.far);
    // The first touch of a RAM block (the access itself, or the guest's
    // table walk through it): once mapped, the same instruction runs again.
    if matches!(iss.dfsc(), FaultStatus::Translation { .. }) && s2.fault_in(ipa) {
        return Outcome::Resume;
    }
    if !is_stage2_fault(iss.dfsc()) {
        // A device's external abort, a parity error (item 9).
        let status = reflected_status(iss.dfsc_raw(), iss.s1ptw());
        return abort(regs, vm, arch, iss.wnr(), status);
    }
    if iss.s1ptw() {
        // The guest's own table walk left its RAM (item 5). The stage-2
        // fault's level is not the stage-1 level, which is not reported.
        let level = iss.dfsc().level().unwrap_or(0).clamp(0, 3) as u64;
        return abort(
            regs,
            vm,
            arch,
            iss.wnr(),
            fsc::SYNC_EXTERNAL_WALK_L0 + level,
        );
    }
    if iss.cm() {
        // Cache maintenance by VA on MMIO or a hole: nothing to
        // maintain (hostile-guest item 6).
        skip(regs);
        return Outcome::Resume;
    }
    if matches!(iss.dfsc(), FaultStatus::AddressSize { .. }) || ipa.raw() >= vm.shared.ipa_limit {
        // Beyond the IPA size (item 4).
        return abort(regs, vm, arch, iss.wnr(), fsc::ADDRESS_SIZE_L0);
    }
    mmio(regs, vm, arch, ipa, iss.mmio_access(), iss.wnr())
}

/// A fault stage 2 itself raised, for which HPFAR_EL2 holds the IPA.
fn is_stage2_fault(status: FaultStatus) -> bool {
    matches!(
        status,
        FaultStatus::AddressSize { .. }
            | FaultStatus::Translation { .. }
            | FaultStatus::AccessFlag { .. }
            | FaultStatus::Permission { .. }
    )
}

/// The status code to give the guest for an abort that was not stage 2's:
/// external aborts and parity errors keep their code (on a walk or not),
/// anything else becomes a synchronous external abort.
fn reflected_status(dfsc: u8, s1ptw: bool) -> u64 {
    match FaultStatus::from_raw(dfsc) {
        FaultStatus::SyncExternal
        | FaultStatus::ParityEcc
        | FaultStatus::SyncExternalOnWalk { .. }
        | FaultStatus::ParityEccOnWalk { .. }
        | FaultStatus::ImpDefUnsupportedExclusive
        | FaultStatus::UnsupportedAtomicUpdate => u64::from(dfsc & 0x3f),
        _ if s1ptw => fsc::SYNC_EXTERNAL_WALK_L0,
        _ => fsc::SYNC_EXTERNAL,
    }
}

/// Steps the guest over the instruction that trapped, by ESR_EL2.IL, with
/// AArch32's PC wrap and ITSTATE advance.
fn skip(regs: &mut GuestRegs) {
    (regs.pc, regs.pstate) = step::next(regs.pc, regs.pstate, regs.esr);
}

/// Every exit but an HVC.
#[inline(never)]
fn handle_other_exit(
    regs: &mut GuestRegs,
    vm: &mut ExitState,
    arch: &mut impl GuestArch,
    s2: &impl Stage2Query,
) -> Outcome {
    match regs.vector {
        8 => {}
        // Interrupts are not routed to EL2 yet; nothing to do but resume.
        9 | 10 => return Outcome::Resume,
        11 => {
            log::warn!("guest SError (ESR {:#x}) at pc {:#x}", regs.esr, regs.pc);
            return Outcome::Resume;
        }
        // With HCR_EL2.RW set, even an AArch32 EL0 exits through the AArch64
        // vectors: these are unreachable, and the VM stops if they are not.
        _ => return Outcome::Stop("an exit through an AArch32 vector, which HCR_EL2.RW rules out"),
    }
    if !step::condition_passes(regs.esr, regs.pstate) {
        // A trapped AArch32 instruction that fails its condition does
        // nothing: it is skipped, never emulated.
        skip(regs);
        return Outcome::Resume;
    }
    match decode(regs.esr) {
        // `handle_exit` takes every HVC; this arm only keeps the match whole.
        Decoded::Hvc64(iss) => {
            vm.counters.bump(ExitCounter::Hvc);
            // HVC's preferred return address is the next instruction already.
            smccc(regs, vm, arch, s2, Conduit::Hvc, iss.imm16())
        }
        Decoded::Smc64(iss) => {
            vm.counters.bump(ExitCounter::Smc);
            // A trapped SMC returns to the SMC itself: step over it.
            skip(regs);
            smccc(regs, vm, arch, s2, Conduit::Smc, iss.imm16())
        }
        Decoded::DataAbort { iss, .. } => data_abort(regs, vm, arch, s2, iss),
        Decoded::InstrAbort { iss, .. }
            if matches!(iss.ifsc(), FaultStatus::Translation { .. })
                && s2.fault_in(fault_ipa(regs.hpfar, regs.far)) =>
        {
            // First fetch from a RAM block: run it again once mapped.
            Outcome::Resume
        }
        Decoded::InstrAbort { iss, .. } => {
            // Fetch from a hole, MMIO or a BAR, which are never executable
            // (items 2, 3), or whose stage-1 walk left RAM (item 5); an
            // external abort routed here by TEA keeps its code (item 9).
            vm.counters.bump(ExitCounter::AbortInjected);
            let status = if is_stage2_fault(iss.ifsc()) {
                if iss.s1ptw() {
                    fsc::SYNC_EXTERNAL_WALK_L0 + iss.ifsc().level().unwrap_or(0).clamp(0, 3) as u64
                } else {
                    fsc::SYNC_EXTERNAL
                }
            } else {
                reflected_status(iss.ifsc_raw(), iss.s1ptw())
            };
            inject_or_stop(
                regs,
                arch,
                Injection::InstructionAbort {
                    far: regs.far,
                    status,
                },
            )
        }
        Decoded::SysReg(iss) => {
            vm.counters.bump(ExitCounter::SysregTrap);
            sysreg(regs, arch, iss)
        }
        Decoded::Wfx(_) => {
            vm.counters.bump(ExitCounter::Wfx);
            // No interrupt can be pending for the guest yet: complete at once.
            skip(regs);
            Outcome::Resume
        }
        // Anything else (unknown instructions, trapped features the guest
        // is not given) is UNDEFINED for the guest (item 12).
        _ => inject_or_stop(regs, arch, Injection::Undefined),
    }
}

fn smccc(
    regs: &mut GuestRegs,
    vm: &mut ExitState,
    arch: &mut impl GuestArch,
    s2: &impl Stage2Query,
    conduit: Conduit,
    imm16: u16,
) -> Outcome {
    let [x0, x1, x2, x3, x4, x5, x6, x7, ..] = regs.x;
    let call = SmcccCall {
        function_id: x0 as u32,
        args: [x1, x2, x3, x4, x5, x6, x7],
        conduit,
        imm16,
    };
    // One lock for the call and the check that follows, so that of two
    // vCPUs turning off at once exactly one sees the last one go.
    let (outcome, any_on) = {
        let mut table = vm.shared.psci.lock();
        table.set_current(vm.mpidr);
        let outcome = psci::handle(&call, &mut table);
        (outcome, table.any_on())
    };
    if conduit == Conduit::Smc && outcome.regs.is_some_and(|r| r[0] == u64::MAX) {
        // Never forwarded to firmware (hostile-guest item 17); debug level,
        // since a guest can issue these in a loop.
        log::debug!(
            "guest SMC {:#x} is not supported: answered NOT_SUPPORTED",
            call.function_id
        );
    }
    let result = match outcome.action {
        Action::Hypercall => Some(hypercall(
            call.function_id,
            &call.args,
            call.conduit,
            vm,
            arch,
            s2,
        )),
        _ => outcome.regs,
    };
    if let Some(values) = result {
        for (dst, src) in regs.x.iter_mut().zip(values) {
            *dst = src;
        }
    }
    match outcome.action {
        Action::SystemOff => Outcome::PowerOff,
        Action::SystemReset => Outcome::Reset,
        Action::CpuOff if !any_on => Outcome::PowerOff,
        Action::CpuOff => Outcome::CpuOff,
        Action::CpuOn {
            target_mpidr,
            entry,
            context_id,
        } => Outcome::CpuOn {
            target_mpidr,
            entry,
            context_id,
        },
        _ => Outcome::Resume,
    }
}

fn hypercall(
    function_id: u32,
    args: &[u64; 7],
    conduit: Conduit,
    vm: &ExitState,
    arch: &mut impl GuestArch,
    s2: &impl Stage2Query,
) -> [u64; 4] {
    let decoded = match conduit {
        Conduit::Hvc => hypercall::decode(function_id, args),
        Conduit::Smc => Err(HypercallError::NotSupported),
    };
    match decoded {
        Err(e) => hypercall::encode_error(e),
        Ok(h) => match h {
            Hypercall::EffectiveAttrs { va, write } => {
                hypercall::encode_effective_attrs(arch.translate_guest_va(va, write))
            }
            Hypercall::Stage2Info { ipa } => hypercall::encode_stage2_info(s2.stage2_info(ipa)),
            Hypercall::ExitStats { index } => hypercall::encode_exit_stat(vm.counters.get(index)),
            Hypercall::BarCheck { bdf, bar } => match s2.bar_check(bdf, bar) {
                Some((now, boot)) => hypercall::encode_bar_check(now, boot),
                None => hypercall::encode_error(HypercallError::InvalidParameters),
            },
            other => hypercall::answer_query(&other)
                .unwrap_or(hypercall::encode_error(HypercallError::NotSupported)),
        },
    }
}

fn mmio(
    regs: &mut GuestRegs,
    vm: &mut ExitState,
    arch: &mut impl GuestArch,
    ipa: Ipa,
    access: Option<MmioAccess>,
    write: bool,
) -> Outcome {
    let Some(access) = access else {
        if let Some((_, name)) = vm.shared.bus.device_at(ipa) {
            // Pair, pre/post-index and SIMD accesses carry no syndrome to
            // emulate from (item 8): the guest gets an abort.
            if !vm.no_syndrome_logged {
                vm.no_syndrome_logged = true;
                log::warn!(
                    "guest access to {name} at {ipa} (pc {:#x}) has no syndrome; injecting an abort (logged once)",
                    regs.pc
                );
            }
        }
        return abort(regs, vm, arch, write, fsc::SYNC_EXTERNAL);
    };
    let reg = usize::from(access.reg);
    let reg_value = if reg == 31 {
        0
    } else {
        regs.x.get(reg).copied().unwrap_or(0)
    };
    let bus_access = BusAccess {
        size: access.size,
        write: access.write,
        value: access.store_value(reg_value),
        sign_extend: access.sign_extend,
        sixty_four: access.sixty_four,
    };
    match vm
        .shared
        .bus
        .dispatch(vm.vcpu, ipa, bus_access, &mut vm.effects)
    {
        DispatchResult::Read(value) => {
            if let Some(dst) = regs.x.get_mut(reg) {
                *dst = value;
            }
        }
        DispatchResult::WriteDone => {}
        // Nothing at this IPA (item 1), or a real device's external abort
        // (item 9); found by the dispatch itself, which saves a second walk
        // of the bus on every emulated access.
        DispatchResult::Unmapped | DispatchResult::DeviceError => {
            return abort(regs, vm, arch, access.write, fsc::SYNC_EXTERNAL);
        }
    }
    vm.counters.bump(ExitCounter::MmioEmulated);
    skip(regs);
    Outcome::Resume
}

fn sysreg(regs: &mut GuestRegs, arch: &mut impl GuestArch, iss: SysRegIss) -> Outcome {
    let e = iss.encoding();
    // DC ISW (CRm 6), DC CSW (CRm 10), DC CISW (CRm 14): op0 1, op1 0, CRn 7, op2 2.
    let set_way = e.op0 == 1
        && e.op1 == 0
        && e.crn == 7
        && matches!((e.crm, e.op2), (6, 2) | (10, 2) | (14, 2));
    if set_way {
        let rt = usize::from(iss.rt());
        let operand = if rt == 31 {
            0
        } else {
            regs.x.get(rt).copied().unwrap_or(0)
        };
        // Invalidate-only would discard data the hypervisor or a device
        // wrote; clean and invalidate is always safe (item 7).
        arch.clean_invalidate_set_way(operand);
        skip(regs);
        return Outcome::Resume;
    }
    if is_ras_error_record(e) {
        // Trapped by HCR_EL2.TERR: the host's error records stay the
        // host's. The guest sees RAS with no records (ERRIDR_EL1.NUM = 0),
        // reads as zero and writes ignored, as KVM does.
        if iss.direction() == Direction::Read {
            if let Some(rt) = regs.x.get_mut(usize::from(iss.rt())) {
                *rt = 0;
            }
        }
        skip(regs);
        return Outcome::Resume;
    }
    inject_or_stop(regs, arch, Injection::Undefined)
}

/// ERRIDR_EL1, ERRSELR_EL1 and the ERX* registers (op0 3, op1 0, CRn 5,
/// CRm 3-5): the RAS error record interface HCR_EL2.TERR traps (Arm ARM
/// D23.2, "HCR_EL2.TERR").
fn is_ras_error_record(e: SysRegEncoding) -> bool {
    e.op0 == 3 && e.op1 == 0 && e.crn == 5 && matches!(e.crm, 3..=5)
}

fn abort(
    regs: &mut GuestRegs,
    vm: &mut ExitState,
    arch: &mut impl GuestArch,
    write: bool,
    status: u64,
) -> Outcome {
    vm.counters.bump(ExitCounter::AbortInjected);
    let far = regs.far;
    inject_or_stop(regs, arch, Injection::DataAbort { far, write, status })
}

fn inject_or_stop(regs: &mut GuestRegs, arch: &mut impl GuestArch, what: Injection) -> Outcome {
    let (vbar, sctlr) = arch.el1_vector_state();
    let guest = GuestState {
        spsr: regs.pstate,
        pc: regs.pc,
        vbar,
        sctlr,
    };
    match inject::inject(&guest, what) {
        Ok(s) => {
            arch.write_el1_exception(s.esr_el1, s.far_el1, s.spsr_el1, s.elr_el1);
            regs.pstate = s.spsr_el2;
            regs.pc = s.elr_el2;
            Outcome::Resume
        }
        Err(inject::InjectError::BadMode(_)) => {
            Outcome::Stop("the guest's saved PSTATE is not an EL0 or EL1 mode")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::devices::vpl011::VPl011;
    use crate::mm::addr::IpaRange;
    use crate::vm::hypercall::{MappingKind, Stage2Features};
    use crate::vm::vcpu::INITIAL_PSTATE;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    #[derive(Default)]
    struct FakeArch {
        injected: Vec<(u64, Option<u64>, u64, u64)>,
        set_way: Vec<u64>,
        at: Vec<(u64, bool)>,
    }

    impl GuestArch for FakeArch {
        fn el1_vector_state(&mut self) -> (u64, u64) {
            (0x4008_0000, 1 << 23)
        }
        fn write_el1_exception(&mut self, esr: u64, far: Option<u64>, spsr: u64, elr: u64) {
            self.injected.push((esr, far, spsr, elr));
        }
        fn translate_guest_va(&mut self, va: u64, write: bool) -> u64 {
            self.at.push((va, write));
            // Normal-NC at host PA 0x8123_4000.
            (0x44 << 56) | 0x8123_4000 | (1 << 11)
        }
        fn clean_invalidate_set_way(&mut self, operand: u64) {
            self.set_way.push(operand);
        }
    }

    struct FakeS2;
    impl Stage2Query for FakeS2 {
        fn stage2_info(&self, ipa: Ipa) -> Stage2Info {
            Stage2Info {
                mem_attr: if ipa.raw() >= 0x4000_0000 { 6 } else { 0 },
                kind: if ipa.raw() >= 0x4000_0000 {
                    MappingKind::GuestRam
                } else {
                    MappingKind::Unmapped
                },
                features: Stage2Features {
                    fwb: true,
                    dic: true,
                    idc: true,
                    xn: false,
                },
            }
        }
        fn bar_check(&self, _bdf: u16, _bar: u8) -> Option<(u64, u64)> {
            None
        }
    }

    const UART: u64 = 0x0900_0000;

    fn vm() -> (ExitState, alloc::rc::Rc<core::cell::RefCell<Vec<u8>>>) {
        let out = alloc::rc::Rc::new(core::cell::RefCell::new(Vec::new()));
        let sink_out = out.clone();
        let mut bus = MmioBus::new();
        let uart = VPl011::new(move |b: u8| sink_out.borrow_mut().push(b));
        // The closure is not Send; wrap it for the test only.
        struct AssertSend<T>(T);
        // SAFETY: host tests run the bus on one thread.
        unsafe impl<T> Send for AssertSend<T> {}
        impl<T: crate::devices::mmio::MmioDevice> crate::devices::mmio::MmioDevice for AssertSend<T> {
            fn name(&self) -> &'static str {
                self.0.name()
            }
            fn read(
                &mut self,
                c: VcpuId,
                o: u64,
                s: u8,
                fx: &mut Effects,
            ) -> crate::devices::mmio::MmioResult<u64> {
                self.0.read(c, o, s, fx)
            }
            fn write(
                &mut self,
                c: VcpuId,
                o: u64,
                s: u8,
                v: u64,
                fx: &mut Effects,
            ) -> crate::devices::mmio::MmioResult<()> {
                self.0.write(c, o, s, v, fx)
            }
        }
        bus.register(
            IpaRange::new(Ipa::new(UART), 0x1000).unwrap(),
            Box::new(AssertSend(uart)),
        )
        .unwrap();
        (ExitState::new(bus, PsciState::new(0), 40), out)
    }

    fn regs(esr: u64) -> GuestRegs {
        GuestRegs {
            pc: 0x4010_0000,
            pstate: INITIAL_PSTATE,
            esr,
            vector: 8,
            ..Default::default()
        }
    }

    fn data_abort(ipa: u64, iss: u64) -> GuestRegs {
        let mut r = regs((0x24 << 26) | (1 << 25) | iss);
        r.far = ipa;
        r.hpfar = (ipa >> 12) << 4;
        r
    }

    #[test]
    fn fault_ipa_combines_hpfar_and_far() {
        assert_eq!(
            fault_ipa(0x0090_0000 << 4 >> 12 << 4, 0xffff_0123),
            Ipa::new(0x0900_0123)
        );
        assert_eq!(
            fault_ipa(u64::MAX, 0xabc).raw(),
            ((1u64 << 56) - 1) & !0xfff | 0xabc
        );
    }

    #[test]
    fn str_to_the_uart_is_emulated_and_steps_over() {
        let (mut vm, out) = vm();
        let mut a = FakeArch::default();
        // STR W1, [x]: ISV, SAS=4 bytes (2), SRT=1, WnR.
        let mut r = data_abort(UART, (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6) | 0x07);
        r.x[1] = u64::from(b'A');
        assert_eq!(
            handle_exit(&mut r, &mut vm, &mut a, &FakeS2),
            Outcome::Resume
        );
        assert_eq!(r.pc, 0x4010_0004);
        assert_eq!(&*out.borrow(), b"A");
        assert!(a.injected.is_empty());
        assert_eq!(vm.counters.get(ExitCounter::MmioEmulated), 1);
    }

    #[test]
    fn ldr_from_the_uart_fills_the_register() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        // LDR W3, [UART + 0xFE0] (PeriphID0 = 0x11).
        let mut r = data_abort(UART + 0xfe0, (1 << 24) | (2 << 22) | (3 << 16) | 0x07);
        r.x[3] = u64::MAX;
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(r.x[3], 0x11);
    }

    #[test]
    fn unmapped_ipa_gets_a_data_abort_at_the_guest_vector() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        let mut r = data_abort(0x0c00_0000, (1 << 24) | (3 << 22) | 0x07);
        assert_eq!(
            handle_exit(&mut r, &mut vm, &mut a, &FakeS2),
            Outcome::Resume
        );
        assert_eq!(r.pc, 0x4008_0000 + 0x200);
        let (esr, far, spsr, elr) = a.injected[0];
        assert_eq!(esr >> 26, 0x25);
        assert_eq!(esr & 0x3f, fsc::SYNC_EXTERNAL);
        assert_eq!(far, Some(0x0c00_0000));
        assert_eq!((spsr, elr), (INITIAL_PSTATE, 0x4010_0000));
    }

    #[test]
    fn no_syndrome_access_to_emulated_mmio_is_aborted() {
        let (mut vm, out) = vm();
        let mut a = FakeArch::default();
        // STP to the UART: ISV = 0, WnR = 1.
        for _ in 0..3 {
            let mut r = data_abort(UART, (1 << 6) | 0x07);
            handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
            assert_eq!(r.pc, 0x4008_0200);
        }
        assert_eq!(a.injected.len(), 3);
        assert!(out.borrow().is_empty());
        assert!(vm.no_syndrome_logged);
    }

    #[test]
    fn exclusive_and_atomic_accesses_to_emulated_mmio_abort() {
        // LDXR/STXR and the LSE atomics report ISV = 0 (Arm ARM D24.2, ISS
        // encoding for a Data Abort; SAS/SRT are then UNKNOWN, filled with
        // junk here), or an IMPLEMENTATION DEFINED "unsupported exclusive
        // or atomic" fault (DFSC 0x35). Nothing to emulate from: the guest
        // gets an abort, the device never sees the access, no register
        // changes (hostile-guest item 11).
        const JUNK: u64 = (3 << 22) | (7 << 16);
        let cases: [(&str, u64, usize, bool, u64); 4] = [
            // LDXR X2, [UART + 0x18]: a read, translation fault.
            ("ldxr", 0x07 | JUNK, 2, false, fsc::SYNC_EXTERNAL),
            // STXR W3, X1, [UART]: a write; W3 (the status) must stay.
            ("stxr", (1 << 6) | 0x07 | JUNK, 3, true, fsc::SYNC_EXTERNAL),
            // LDADD X1, X0, [UART + 0x18]: read-modify-write, reported as a write.
            ("ldadd", (1 << 6) | 0x07, 0, true, fsc::SYNC_EXTERNAL),
            // CAS X0, X1, [UART]: refused by the memory system, DFSC 0x35.
            ("cas", (1 << 6) | 0x35, 0, true, 0x35),
        ];
        for (name, iss, reg, write, status) in cases {
            let (mut vm, out) = vm();
            let mut a = FakeArch::default();
            let mut r = data_abort(UART + 0x18, iss);
            r.x[1] = u64::from(b'X');
            r.x[reg] = 0x5e5e_5e5e;
            assert_eq!(
                handle_exit(&mut r, &mut vm, &mut a, &FakeS2),
                Outcome::Resume,
                "{name}"
            );
            assert_eq!(a.injected.len(), 1, "{name}");
            let (esr, far, ..) = a.injected[0];
            assert_eq!(esr >> 26, 0x25, "{name}: a data abort at EL1");
            assert_eq!(esr & 0x3f, status, "{name}");
            assert_eq!(esr & (1 << 6) != 0, write, "{name}: WnR");
            assert_eq!(esr & (1 << 24), 0, "{name}: no syndrome handed on");
            assert_eq!(far, Some(UART + 0x18), "{name}");
            assert_eq!(r.pc, 0x4008_0200, "{name}: at the guest's vector");
            assert_eq!(r.x[reg], 0x5e5e_5e5e, "{name}: register untouched");
            assert!(out.borrow().is_empty(), "{name}: nothing reached the UART");
            assert_eq!(vm.counters.get(ExitCounter::MmioEmulated), 0, "{name}");
        }
    }

    #[test]
    fn cache_maintenance_on_a_hole_is_skipped() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        let mut r = data_abort(0x0c00_0000, (1 << 8) | (1 << 6) | 0x07);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(r.pc, 0x4010_0004);
        assert!(a.injected.is_empty());
    }

    #[test]
    fn walks_and_out_of_range_ipas_are_aborts() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        let mut r = data_abort(0x0900_0000, (1 << 7) | 0x07);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(a.injected[0].0 & 0x3f, fsc::SYNC_EXTERNAL_WALK_L0 + 3);
        assert_eq!(a.injected[0].0 & (1 << 7), 0, "S1PTW is stage 2's");
        let mut r = data_abort(1 << 41, (1 << 24) | (3 << 22) | 0x07);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(a.injected[1].0 & 0x3f, fsc::ADDRESS_SIZE_L0);
        // An instruction fetch whose stage-1 walk left RAM.
        let mut r = regs((0x20 << 26) | (1 << 25) | (1 << 7) | 0x06);
        r.far = 0x1234_5000;
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(a.injected[2].0 >> 26, 0x21);
        assert_eq!(a.injected[2].0 & 0x3f, fsc::SYNC_EXTERNAL_WALK_L0 + 2);
    }

    #[test]
    fn at_and_dc_whose_walk_faults_at_stage_2_abort_instead_of_skipping() {
        // AT S1E1R (or DC CIVAC) on a VA whose stage-1 table lies in a hole:
        // CM and S1PTW both set. Skipping it would leave PAR_EL1 stale.
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        let mut r = data_abort(0x0b00_0000, (1 << 8) | (1 << 7) | 0x06);
        r.far = 0xf2_0000_0000;
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(
            r.pc, 0x4008_0200,
            "taken to the guest's vector, not skipped"
        );
        let (esr, far, _, elr) = a.injected[0];
        assert_eq!(
            esr, 0x9600_0016,
            "EC 0x25, IL, external abort on walk, level 2"
        );
        assert_eq!((far, elr), (Some(0xf2_0000_0000), 0x4010_0000));
    }

    #[test]
    fn external_aborts_routed_by_tea_go_back_without_emulation() {
        // HCR_EL2.TEA routes a device's synchronous external abort here;
        // HPFAR_EL2 is not valid for it (here it happens to name the UART,
        // with a valid syndrome): nothing may be emulated.
        let (mut vm, out) = vm();
        let mut a = FakeArch::default();
        for dfsc in [0x10u64, 0x18, 0x15] {
            let mut r = data_abort(UART, (1 << 24) | (2 << 22) | (1 << 16) | (1 << 6) | dfsc);
            r.x[1] = u64::from(b'Z');
            r.far = 0x8000_0040;
            handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
            let (esr, far, ..) = *a.injected.last().unwrap();
            assert_eq!(esr & 0x3f, dfsc);
            assert_eq!(far, Some(0x8000_0040));
            assert_eq!(r.pc, 0x4008_0200);
        }
        assert!(out.borrow().is_empty());
        assert_eq!(vm.counters.get(ExitCounter::MmioEmulated), 0);
        // An instruction fetch's external abort keeps its code too.
        let mut r = regs((0x20 << 26) | (1 << 25) | 0x10);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(a.injected.last().unwrap().0 & 0x3f, 0x10);
    }

    /// AArch32 User mode, T32, flags clear.
    const USR_T32: u64 = 0b1_0000 | (1 << 5);

    #[test]
    fn aarch32_el0_aborts_are_injected_at_the_lower_aarch32_vector() {
        // HCR_EL2.RW is set: a 32-bit EL0 task's exits come through the
        // AArch64 lower-EL vector (8), with SPSR_EL2.M = 0b10000.
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        // A 16-bit T32 LDR r2, [r1] from a hole: ISV 1, IL 0.
        let mut r = data_abort(0x0c00_0000, (1 << 24) | (2 << 22) | (2 << 16) | 0x07);
        r.esr &= !(1 << 25);
        r.pstate = USR_T32;
        r.pc = 0x8000;
        assert_eq!(
            handle_exit(&mut r, &mut vm, &mut a, &FakeS2),
            Outcome::Resume
        );
        assert_eq!(r.pc, 0x4008_0000 + 0x600);
        assert_eq!(r.pstate, 0x3c5, "EL1h, DAIF masked");
        let (esr, far, spsr, elr) = a.injected[0];
        assert_eq!(esr, 0x9200_0010, "EC 0x24 (lower EL), IL 1, DFSC 0x10");
        assert_eq!((far, spsr, elr), (Some(0x0c00_0000), USR_T32, 0x8000));
        // An instruction fetch from a hole, and an undefined system access.
        let mut r = regs((0x20 << 26) | (1 << 25) | 0x07);
        (r.pstate, r.pc, r.far) = (0b1_0000, 0x9000, 0x9000);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!((r.pc, a.injected[1].0), (0x4008_0600, 0x8200_0010));
        // MRC p15 trapped (EC 0x03), condition AL: UNDEF.
        let mut r = regs((0x03 << 26) | (1 << 25) | (1 << 24) | (0xe << 20));
        r.pstate = 0b1_0000;
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!((r.pc, a.injected[2].0), (0x4008_0600, 1 << 25));
    }

    #[test]
    fn t32_traps_step_by_il_and_advance_itstate() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        // A 16-bit T32 WFI (EC 0x01, IL 0, CV 1, COND AL).
        let mut r = regs((0x01 << 26) | (1 << 24) | (0xe << 20));
        (r.pstate, r.pc) = (USR_T32, 0x8000);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!((r.pc, r.pstate), (0x8002, USR_T32));
        // The same WFI in the first slot of ITE EQ, Z set: ITSTATE moves on.
        let ite_eq = step::with_itstate(USR_T32 | (1 << 30), 0b0000_1100);
        let mut r = regs((0x01 << 26) | (1 << 24));
        (r.pstate, r.pc) = (ite_eq, 0x8000);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(r.pc, 0x8002);
        assert_eq!(step::itstate(r.pstate), 0b0001_1000);
        // A 16-bit T32 LDR r2, [r1] from the UART's PeriphID0: emulated.
        let mut r = data_abort(UART + 0xfe0, (1 << 24) | (2 << 22) | (2 << 16) | 0x07);
        r.esr &= !(1 << 25);
        (r.pstate, r.pc) = (USR_T32, 0x8004);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!((r.pc, r.x[2]), (0x8006, 0x11));
        // A32 steps by 4; the PC wraps at 32 bits.
        let mut r = regs((0x01 << 26) | (1 << 25) | (1 << 24) | (0xe << 20));
        (r.pstate, r.pc) = (0b1_0000, 0xffff_fffc);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(r.pc, 0);
        assert!(a.injected.is_empty());
    }

    #[test]
    fn aarch32_traps_that_fail_their_condition_are_skipped() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        // MRCNE p15 with Z set (EC 0x03, CV 1, COND NE): would be an UNDEF
        // if it ran; it does not run.
        let mut r = regs((0x03 << 26) | (1 << 25) | (1 << 24) | (0x1 << 20));
        (r.pstate, r.pc) = (0b1_0000 | (1 << 30), 0x8000);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(r.pc, 0x8004);
        assert!(a.injected.is_empty());
        assert_eq!(vm.counters.get(ExitCounter::Wfx), 0);
        // A WFI in the ELSE slot of an IT block whose condition fails (CV 0).
        let in_block = step::with_itstate(USR_T32 | (1 << 30), 0b0001_1000);
        let mut r = regs(0x01 << 26);
        (r.pstate, r.pc) = (in_block, 0x8002);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!((r.pc, step::itstate(r.pstate)), (0x8004, 0));
        assert_eq!(vm.counters.get(ExitCounter::Wfx), 0, "not executed");
    }

    #[test]
    fn ras_error_records_read_as_zero_and_ignore_writes() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        // MRS x3, ERRIDR_EL1 (S3_0_C5_C3_0); MRS x4, ERXSTATUS_EL1 (S3_0_C5_C4_2).
        for (rt, crm, op2) in [(3u64, 3u64, 0u64), (4, 4, 2), (5, 5, 1)] {
            let iss = (3 << 20) | (op2 << 17) | (5 << 10) | (rt << 5) | (crm << 1) | 1;
            let mut r = regs((0x18 << 26) | (1 << 25) | iss);
            r.x[rt as usize] = u64::MAX;
            handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
            assert_eq!((r.x[rt as usize], r.pc), (0, 0x4010_0004));
        }
        // MSR ERRSELR_EL1, x6 (S3_0_C5_C3_1): ignored, x6 kept.
        let iss = (3 << 20) | (1 << 17) | (5 << 10) | (6 << 5) | (3 << 1);
        let mut r = regs((0x18 << 26) | (1 << 25) | iss);
        r.x[6] = 7;
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!((r.x[6], r.pc), (7, 0x4010_0004));
        assert!(a.injected.is_empty());
        // Neighbours are not error records: S3_0_C5_C2_0 (ESR_EL1 by
        // MRS would not trap; a trapped encoding next to them UNDEFs).
        let iss = (3 << 20) | (5 << 10) | (2 << 1) | 1;
        let mut r = regs((0x18 << 26) | (1 << 25) | iss);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(a.injected.len(), 1);
    }

    #[test]
    fn smccc_answers_and_preserves_x4_to_x17() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        let mut r = regs((0x16 << 26) | (1 << 25));
        r.x[0] = 1337;
        for i in 4..18 {
            r.x[i] = 0x1000 + i as u64;
        }
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(r.x[0], u64::MAX);
        for i in 4..18 {
            assert_eq!(r.x[i], 0x1000 + i as u64);
        }
        assert_eq!(
            r.pc, 0x4010_0000,
            "HVC returns to the next instruction already"
        );
        // Trapped SMC steps over itself and is answered the same way.
        let mut r = regs((0x17 << 26) | (1 << 25));
        r.x[0] = 0x8400_0000;
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(r.x[0], 0x10001);
        assert_eq!(r.pc, 0x4010_0004);
    }

    #[test]
    fn system_off_and_reset_end_the_vm() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        let mut r = regs((0x16 << 26) | (1 << 25));
        r.x[0] = 0x8400_0008;
        assert_eq!(
            handle_exit(&mut r, &mut vm, &mut a, &FakeS2),
            Outcome::PowerOff
        );
        r.x[0] = 0x8400_0009;
        assert_eq!(
            handle_exit(&mut r, &mut vm, &mut a, &FakeS2),
            Outcome::Reset
        );
    }

    #[test]
    fn hypercalls_reach_the_arch_and_stage2() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        let mut r = regs((0x16 << 26) | (1 << 25));
        r.x[0] = hypercall::HV_EFFECTIVE_ATTRS.into();
        r.x[1] = 0x1234_5000;
        r.x[2] = 1;
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(a.at, [(0x1234_5000, true)]);
        assert_eq!(
            (r.x[0], r.x[1]),
            (0, (0x44 << 56) | (1 << 11)),
            "no host PA"
        );
        r.x[0] = hypercall::HV_STAGE2_INFO.into();
        r.x[1] = 0x4000_0000;
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(
            (r.x[0], r.x[1], r.x[2]),
            (0, 6, MappingKind::GuestRam as u64)
        );
        // The same call through SMC is not a hypercall.
        let mut r = regs((0x17 << 26) | (1 << 25));
        r.x[0] = hypercall::HV_STAGE2_INFO.into();
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(r.x[0], u64::MAX);
    }

    #[test]
    fn own_service_short_path_answers_like_the_general_one() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        for fid in [
            hypercall::HV_CALL_COUNT,
            hypercall::HV_EXIT_STATS,
            0x8600_0055,
            0xc600_ff01,
        ] {
            let args = [0u64, 0, 0, 0, 0, 0, 0];
            // The PSCI dispatcher would forward it to `hypercall` untouched.
            let call = SmcccCall {
                function_id: fid,
                args,
                conduit: Conduit::Hvc,
                imm16: 0,
            };
            assert!(matches!(
                psci::handle(&call, &mut vm.shared.psci.lock()).action,
                Action::Hypercall
            ));
            let general = hypercall(fid, &args, Conduit::Hvc, &vm, &mut a, &FakeS2);
            let mut r = regs((0x16 << 26) | (1 << 25));
            r.x[0] = fid.into();
            let exits = vm.counters.get(ExitCounter::Total);
            let hvcs = vm.counters.get(ExitCounter::Hvc);
            assert_eq!(
                handle_exit(&mut r, &mut vm, &mut a, &FakeS2),
                Outcome::Resume
            );
            if fid != hypercall::HV_EXIT_STATS {
                assert_eq!(r.x[..4], general, "{fid:#x}");
            }
            assert_eq!(r.pc, 0x4010_0000, "HVC returns past itself already");
            assert_eq!(vm.counters.get(ExitCounter::Total), exits + 1);
            assert_eq!(vm.counters.get(ExitCounter::Hvc), hvcs + 1);
            // A non-zero immediate is not an SMCCC call, whatever x0 says.
            let mut r = regs((0x16 << 26) | (1 << 25) | 1);
            r.x[0] = fid.into();
            handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
            assert_eq!(r.x[0], u64::MAX, "{fid:#x} with imm16 1");
        }
    }

    #[test]
    fn set_way_becomes_clean_invalidate_and_other_sysregs_undef() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        // DC ISW x5: op0=1 op1=0 CRn=7 CRm=6 op2=2, Rt=5 (ISS: op0<<20|op2<<17|op1<<14|CRn<<10|Rt<<5|CRm<<1).
        let iss = (1 << 20) | (2 << 17) | (7 << 10) | (5 << 5) | (6 << 1);
        let mut r = regs((0x18 << 26) | (1 << 25) | iss);
        r.x[5] = 0x42;
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(a.set_way, [0x42]);
        assert_eq!(r.pc, 0x4010_0004);
        // MRS x0, PMCR_EL0 (op0=3 op1=3 CRn=9 CRm=12 op2=0, read).
        let iss = (3 << 20) | (3 << 14) | (9 << 10) | (12 << 1) | 1;
        let mut r = regs((0x18 << 26) | (1 << 25) | iss);
        handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        assert_eq!(a.injected.last().unwrap().0, 1 << 25, "UNDEF: EC 0, IL 1");
    }

    #[test]
    fn exits_through_an_aarch32_vector_stop_the_vm_not_the_hypervisor() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        let mut r = regs(0);
        r.vector = 12;
        assert!(matches!(
            handle_exit(&mut r, &mut vm, &mut a, &FakeS2),
            Outcome::Stop(_)
        ));
    }

    #[test]
    fn random_exits_never_panic() {
        let (mut vm, _) = vm();
        let mut a = FakeArch::default();
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..100_000 {
            let mut r = GuestRegs {
                esr: next() & 0xffff_ffff,
                far: next(),
                hpfar: next(),
                pc: next(),
                pstate: next() & 0x3ff,
                vector: 8 + next() % 8,
                ..Default::default()
            };
            for x in r.x.iter_mut() {
                *x = next();
            }
            let _ = handle_exit(&mut r, &mut vm, &mut a, &FakeS2);
        }
    }
}
