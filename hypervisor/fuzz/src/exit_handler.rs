//! Sequences of vcpu exits with guest-chosen registers against one VM: no
//! panic, x4-x17 kept across every HVC/SMC, and the PC moved only by 4, not
//! at all, or to the guest's vector with one exception injected.

use hypervisor::devices::mmio::MmioBus;
use hypervisor::devices::vpl011::VPl011;
use hypervisor::mm::addr::{Ipa, IpaRange};
use hypervisor::vm::exit::{handle_exit, ExitState, GuestArch, Outcome, Stage2Query};
use hypervisor::vm::hypercall::{MappingKind, Stage2Features, Stage2Info};
use hypervisor::vm::psci::PsciState;
use hypervisor::vm::step;
use hypervisor::vm::vcpu::{GuestRegs, INITIAL_PSTATE};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

const UART: u64 = 0x0900_0000;

struct FakeArch {
    vbar: u64,
    sctlr: u64,
    injected: usize,
    last_elr: u64,
}

impl GuestArch for FakeArch {
    fn el1_vector_state(&mut self) -> (u64, u64) {
        (self.vbar, self.sctlr)
    }
    fn write_el1_exception(&mut self, _esr: u64, _far: Option<u64>, _spsr: u64, elr: u64) {
        self.injected += 1;
        self.last_elr = elr;
    }
    fn translate_guest_va(&mut self, va: u64, _write: bool) -> u64 {
        va ^ 0x5a5a
    }
    fn clean_invalidate_set_way(&mut self, _operand: u64) {}
}

struct FakeS2;

impl Stage2Query for FakeS2 {
    fn stage2_info(&self, ipa: Ipa) -> Stage2Info {
        Stage2Info {
            mem_attr: (ipa.raw() & 0xf) as u8,
            kind: MappingKind::GuestRam,
            features: Stage2Features {
                fwb: false,
                dic: true,
                idc: false,
                xn: true,
            },
        }
    }
    fn bar_check(&self, bdf: u16, bar: u8) -> Option<(u64, u64)> {
        (bdf & 1 == 0).then_some((u64::from(bar), 0))
    }
}

fn regs(u: &mut Unstructured) -> Result<GuestRegs> {
    let mut r = GuestRegs {
        x: u.arbitrary()?,
        sp_el0: u.arbitrary()?,
        pc: u.arbitrary()?,
        pstate: if u.ratio(3, 4)? {
            *u.choose(&[INITIAL_PSTATE, 0b0100, 0b0000])?
        } else {
            u.arbitrary()?
        },
        esr: u.arbitrary()?,
        far: u.arbitrary()?,
        hpfar: 0,
        vector: if u.ratio(7, 8)? { 8 } else { u.arbitrary()? },
    };
    // Steer the class towards the handler's arms and the fault towards the UART.
    if u.ratio(3, 4)? {
        let ec = *u.choose(&[0x16u64, 0x17, 0x24, 0x20, 0x18, 0x01, 0x00, 0x3c])?;
        r.esr = (r.esr & !(0x3f << 26)) | (ec << 26);
    }
    if u.ratio(1, 2)? {
        r.far = UART + u.int_in_range(0..=0x1010)? - 8;
    }
    r.hpfar = if u.ratio(7, 8)? {
        (r.far >> 12) << 4
    } else {
        u.arbitrary()?
    };
    Ok(r)
}

fn check_one(u: &mut Unstructured, vm: &mut ExitState) -> Result<()> {
    let before = regs(u)?;
    let mut arch = FakeArch {
        vbar: u.arbitrary()?,
        sctlr: u.arbitrary()?,
        injected: 0,
        last_elr: 0,
    };
    let mut r = before;
    let outcome = handle_exit(&mut r, vm, &mut arch, &FakeS2);
    let ec = (before.esr >> 26) & 0x3f;
    assert!(arch.injected <= 1);
    assert_eq!(r.sp_el0, before.sp_el0);
    if before.vector != 8 {
        assert_eq!(r, before);
        return Ok(());
    }
    if ec == 0x16 || ec == 0x17 {
        assert_eq!(r.x[4..], before.x[4..], "SMCCC changed x4-x30");
        assert_eq!(arch.injected, 0);
        let pc = if ec == 0x17 {
            step::next(before.pc, before.pstate, before.esr).0
        } else {
            before.pc
        };
        assert_eq!(r.pc, pc);
    } else if arch.injected == 1 {
        let offset = match before.pstate & 0x1f {
            0b0000 => 0x400,
            0b0100 => 0,
            0b0101 => 0x200,
            0b1_0000 => 0x600,
            m => panic!("injected from mode {m:#x}"),
        };
        assert_eq!(r.pc, arch.vbar.wrapping_add(offset));
        let pc = if before.pstate & 0b1_0000 != 0 {
            before.pc & 0xffff_ffff
        } else {
            before.pc
        };
        assert_eq!(arch.last_elr, pc);
    } else if outcome == Outcome::Resume {
        // Stepped past by ESR_EL2.IL, with AArch32's wrap and ITSTATE.
        assert_eq!(
            (r.pc, r.pstate),
            step::next(before.pc, before.pstate, before.esr)
        );
    } else {
        assert_eq!(r.pc, before.pc);
    }
    if ec != 0x16 && ec != 0x17 {
        let changed = r.x.iter().zip(&before.x).filter(|(a, b)| a != b).count();
        assert!(changed <= 1);
    }
    Ok(())
}

/// What the fuzz target runs for one input, and the corpus replay test too.
pub fn fuzz(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(ipa_bits) = u.int_in_range(32..=52) else {
        return;
    };
    let mut bus = MmioBus::new();
    if let Some(range) = IpaRange::new(Ipa::new(UART), 0x1000) {
        let _ = bus.register(range, Box::new(VPl011::new(|_: u8| {})));
    }
    let mut psci = PsciState::new(0);
    let _ = psci.add_vcpu(1);
    let mut vm = ExitState::new(bus, psci, ipa_bits);
    while !u.is_empty() {
        if check_one(&mut u, &mut vm).is_err() {
            break;
        }
    }
}
