//! Host tests of several vCPUs sharing one VM's exit state: PSCI power
//! transitions as the exit handler reports them to the run loop, per-vCPU
//! counters and effects, and a shared device seeing which vCPU accessed it.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use spin::Mutex;

use crate::devices::mmio::{Effect, Effects, MmioBus, MmioDevice, MmioResult, VcpuId};
use crate::mm::addr::{Ipa, IpaRange, PhysAddr};
use crate::mm::attrs::BarPolicy;
use crate::vm::exit::{handle_exit, ExitState, GuestArch, Outcome, Stage2Query, VmExitShared};
use crate::vm::hypercall::{ExitCounter, MappingKind, Stage2Features, Stage2Info};
use crate::vm::psci::{fid, ret, PsciState, AFFINITY_OFF, AFFINITY_ON, AFFINITY_ON_PENDING};
use crate::vm::vcpu::{GuestRegs, INITIAL_PSTATE};

struct Arch;
impl GuestArch for Arch {
    fn el1_vector_state(&mut self) -> (u64, u64) {
        (0x4008_0000, 0)
    }
    fn write_el1_exception(&mut self, _: u64, _: Option<u64>, _: u64, _: u64) {}
    fn translate_guest_va(&mut self, _: u64, _: bool) -> u64 {
        1
    }
    fn clean_invalidate_set_way(&mut self, _: u64) {}
}

struct S2;
impl Stage2Query for S2 {
    fn stage2_info(&self, _: Ipa) -> Stage2Info {
        Stage2Info {
            mem_attr: 0,
            kind: MappingKind::Unmapped,
            features: Stage2Features {
                fwb: false,
                dic: false,
                idc: false,
                xn: false,
            },
        }
    }
    fn bar_check(&self, _: u16, _: u8) -> Option<(u64, u64)> {
        None
    }
}

/// Which vCPU made each access, and whether it was a write.
type AccessLog = Arc<Mutex<Vec<(VcpuId, bool)>>>;

/// Records which vCPU made each access; a write asks for a BAR mapping.
struct Probe(AccessLog);
impl MmioDevice for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn read(&mut self, vcpu: VcpuId, _: u64, _: u8, _: &mut Effects) -> MmioResult<u64> {
        self.0.lock().push((vcpu, false));
        Ok(vcpu.0 as u64)
    }
    fn write(&mut self, vcpu: VcpuId, _: u64, _: u8, _: u64, fx: &mut Effects) -> MmioResult<()> {
        self.0.lock().push((vcpu, true));
        fx.push(Effect::MapBar {
            ipa: IpaRange::new(Ipa::new(0x1000_0000), 0x1000).unwrap(),
            pa: PhysAddr::new(0x8000_0000),
            policy: BarPolicy::GuestChoice,
        });
        Ok(())
    }
}

const PROBE: u64 = 0x0a00_0000;
const RAM: u64 = 0x4000_0000;

/// A VM with `n` vCPUs and the probe device; the exit states of each.
fn vm(n: usize) -> (Vec<ExitState>, AccessLog) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut bus = MmioBus::new();
    bus.register(
        IpaRange::new(Ipa::new(PROBE), 0x1000).unwrap(),
        Box::new(Probe(log.clone())),
    )
    .unwrap();
    let mut psci = PsciState::new(1 << 31);
    for i in 1..n {
        psci.add_vcpu(i as u64).unwrap();
    }
    psci.set_entry_range(IpaRange::new(Ipa::new(RAM), 0x1000_0000).unwrap());
    let shared = Arc::new(VmExitShared::new(bus, psci, 40));
    let states = (0..n)
        .map(|i| ExitState::for_vcpu(shared.clone(), VcpuId(i), i as u64))
        .collect();
    (states, log)
}

fn hvc(function: u32, args: &[u64]) -> GuestRegs {
    let mut r = GuestRegs {
        pc: RAM + 0x100,
        pstate: INITIAL_PSTATE,
        esr: (0x16 << 26) | (1 << 25),
        vector: 8,
        ..GuestRegs::default()
    };
    r.x[0] = u64::from(function);
    r.x[1..=args.len()].copy_from_slice(args);
    r
}

fn call(state: &mut ExitState, function: u32, args: &[u64]) -> (Outcome, i64) {
    let mut r = hvc(function, args);
    let out = handle_exit(&mut r, state, &mut Arch, &S2);
    (out, r.x[0] as i64)
}

#[test]
fn cpu_on_off_and_the_last_one_off_powers_the_vm_down() {
    let (mut v, _) = vm(3);
    let (out, x0) = call(&mut v[0], fid::CPU_ON_64, &[2, RAM + 0x800, 0xC0DE]);
    assert_eq!(
        out,
        Outcome::CpuOn {
            target_mpidr: 2,
            entry: RAM + 0x800,
            context_id: 0xC0DE
        }
    );
    assert_eq!(x0, 0);
    // Until the run loop reports it running, vCPU 2 is pending, for anyone.
    assert_eq!(
        call(&mut v[1], fid::AFFINITY_INFO_64, &[2, 0]).1,
        AFFINITY_ON_PENDING as i64
    );
    assert_eq!(
        call(&mut v[1], fid::CPU_ON_64, &[2, RAM, 0]).1,
        ret::ON_PENDING as i64
    );
    assert!(v[2].shared.psci.lock().mark_running(2));
    assert_eq!(
        call(&mut v[0], fid::AFFINITY_INFO_64, &[2, 0]).1,
        AFFINITY_ON as i64
    );
    assert_eq!(
        call(&mut v[0], fid::CPU_ON_64, &[2, RAM, 0]).1,
        ret::ALREADY_ON as i64
    );
    // vCPU 2 turns itself off; vCPU 1 was never on.
    assert_eq!(call(&mut v[2], fid::CPU_OFF, &[]).0, Outcome::CpuOff);
    assert_eq!(
        call(&mut v[0], fid::AFFINITY_INFO_64, &[2, 0]).1,
        AFFINITY_OFF as i64
    );
    assert_eq!(
        call(&mut v[0], fid::AFFINITY_INFO_64, &[1, 0]).1,
        AFFINITY_OFF as i64
    );
    // The last vCPU on turning off ends the VM.
    assert_eq!(call(&mut v[0], fid::CPU_OFF, &[]).0, Outcome::PowerOff);
}

#[test]
fn bad_cpu_on_arguments_get_their_psci_errors() {
    let (mut v, _) = vm(2);
    for (args, want) in [
        ([7u64, RAM, 0], ret::INVALID_PARAMETERS),
        ([1 << 8, RAM, 0], ret::INVALID_PARAMETERS),
        ([1, RAM + 2, 0], ret::INVALID_ADDRESS),
        ([1, 0x3000_0000, 0], ret::INVALID_ADDRESS),
        ([1, RAM + 0x1000_0000, 0], ret::INVALID_ADDRESS),
        ([0, RAM, 0], ret::ALREADY_ON),
    ] {
        let (out, x0) = call(&mut v[0], fid::CPU_ON_64, &args);
        assert_eq!((out, x0), (Outcome::Resume, want as i64), "{args:x?}");
    }
    assert_eq!(v[0].shared.psci.lock().power(1), Some(false));
}

#[test]
fn system_off_and_reset_from_a_secondary_end_the_vm() {
    let (mut v, _) = vm(2);
    call(&mut v[0], fid::CPU_ON_64, &[1, RAM, 0]);
    assert_eq!(call(&mut v[1], fid::SYSTEM_OFF, &[]).0, Outcome::PowerOff);
    assert_eq!(call(&mut v[1], fid::SYSTEM_RESET, &[]).0, Outcome::Reset);
}

#[test]
fn each_vcpu_counts_its_own_exits_and_collects_its_own_effects() {
    let (mut v, log) = vm(2);
    let mut load = GuestRegs {
        pc: RAM,
        pstate: INITIAL_PSTATE,
        // LDR w0 with a valid syndrome (ISV, SAS word), a level-3 translation fault.
        esr: (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | 0b00_0111,
        far: PROBE,
        hpfar: (PROBE >> 12) << 4,
        vector: 8,
        ..GuestRegs::default()
    };
    let mut store = load;
    store.esr |= 1 << 6;
    assert_eq!(
        handle_exit(&mut load, &mut v[1], &mut Arch, &S2),
        Outcome::Resume
    );
    assert_eq!(load.x[0], 1, "the device saw vCPU 1");
    assert_eq!(
        handle_exit(&mut store, &mut v[0], &mut Arch, &S2),
        Outcome::Resume
    );
    assert_eq!(*log.lock(), [(VcpuId(1), false), (VcpuId(0), true)]);
    assert!(v[1].effects.is_empty());
    assert_eq!(v[0].effects.as_slice().len(), 1);
    assert_eq!(v[0].counters.get(ExitCounter::MmioEmulated), 1);
    assert_eq!(v[1].counters.get(ExitCounter::MmioEmulated), 1);
    assert_eq!(v[0].counters.get(ExitCounter::Total), 1);
}
