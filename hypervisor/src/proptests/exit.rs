//! The exit handler over arbitrary guest registers: it never panics, SMCCC
//! calls leave x4-x17 alone, and the guest PC only ever moves in the ways the
//! architecture allows (hostile-guest items 1-18).

use crate::devices::mmio::MmioBus;
use crate::devices::vpl011::VPl011;
use crate::mm::addr::{Ipa, IpaRange};
use crate::vm::exit::{handle_exit, ExitState, GuestArch, Outcome, Stage2Query};
use crate::vm::hypercall::{MappingKind, Stage2Features, Stage2Info};
use crate::vm::psci::PsciState;
use crate::vm::step;
use crate::vm::vcpu::{GuestRegs, INITIAL_PSTATE};
use alloc::boxed::Box;
use alloc::vec::Vec;
use proptest::prelude::*;

const UART: u64 = 0x0900_0000;

/// Records what the handler asks of the hardware.
struct FakeArch {
    vbar: u64,
    sctlr: u64,
    injected: Vec<(u64, Option<u64>, u64, u64)>,
}

impl GuestArch for FakeArch {
    fn el1_vector_state(&mut self) -> (u64, u64) {
        (self.vbar, self.sctlr)
    }
    fn write_el1_exception(&mut self, esr: u64, far: Option<u64>, spsr: u64, elr: u64) {
        self.injected.push((esr, far, spsr, elr));
    }
    fn translate_guest_va(&mut self, va: u64, _write: bool) -> u64 {
        va.rotate_left(7)
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
                fwb: true,
                dic: false,
                idc: true,
                xn: true,
            },
        }
    }
    fn bar_check(&self, bdf: u16, bar: u8) -> Option<(u64, u64)> {
        (bdf & 1 == 0).then_some((u64::from(bar), u64::from(bar)))
    }
}

fn vm(ipa_bits: u32) -> ExitState {
    let mut bus = MmioBus::new();
    let uart = IpaRange::new(Ipa::new(UART), 0x1000);
    if let Some(range) = uart {
        let _ = bus.register(range, Box::new(VPl011::new(Vec::<u8>::new())));
    }
    let mut psci = PsciState::new(0);
    let _ = psci.add_vcpu(1);
    ExitState::new(bus, psci, ipa_bits)
}

/// Exception classes the handler has arms for, plus a few it does not, so
/// the interesting paths are reached more often than by uniform ESRs.
fn ec() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0x16u64),
        Just(0x17),
        Just(0x24),
        Just(0x25),
        Just(0x20),
        Just(0x18),
        Just(0x01),
        Just(0x00),
        0u64..64,
    ]
}

/// An ESR whose ISS, for data aborts, often has a valid syndrome.
fn esr() -> impl Strategy<Value = u64> {
    (
        ec(),
        any::<bool>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(ec, il, iss, high, isv)| {
            let iss = u64::from(iss & 0x01ff_ffff) | if isv { 1 << 24 } else { 0 };
            (u64::from(high) << 32) | (ec << 26) | (u64::from(il) << 25) | iss
        })
}

/// A faulting address: near the UART most of the time, anywhere otherwise.
fn fault_address() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..0x1010).prop_map(|o| UART + o - 8),
        any::<u64>(),
        0u64..(1 << 42),
    ]
}

/// SMCCC function IDs: the implemented ones, the hypervisor service, and
/// anything.
fn function_id() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0x8400_0000u64..0x8400_0020),
        (0xC400_0000u64..0xC400_0020),
        (0x8000_0000u64..0x8000_0004),
        (0x8600_FF00u64..0x8600_FF10),
        (0xC600_0000u64..0xC600_0010),
        any::<u64>(),
    ]
}

fn pstate() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(INITIAL_PSTATE),
        Just(0b0100u64),
        Just(0b0000u64),
        any::<u64>().prop_map(|p| p & 0xffff_ffff),
    ]
}

prop_compose! {
    fn guest_regs()(
        x in proptest::array::uniform31(any::<u64>()),
        x0 in function_id(),
        sp_el0: u64,
        pc: u64,
        pstate in pstate(),
        esr in esr(),
        far in fault_address(),
        vector in prop_oneof![Just(8u64), 8u64..16, any::<u64>()],
    ) -> GuestRegs {
        let mut x = x;
        x[0] = x0;
        GuestRegs {
            x,
            sp_el0,
            pc,
            pstate,
            esr,
            far,
            hpfar: (far >> 12) << 4,
            vector,
        }
    }
}

fn vector_offset(pstate: u64) -> Option<u64> {
    match pstate & 0b1_1111 {
        0b0000 => Some(0x400),
        0b0100 => Some(0x000),
        0b0101 => Some(0x200),
        0b1_0000 => Some(0x600),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Whatever the guest left in its registers: no panic, and the PC is
    /// unchanged (HVC, interrupts, a stopped VM), advanced past the
    /// instruction as ESR_EL2.IL and PSTATE say (a trapped SMC, an emulated
    /// or skipped instruction; `vm::step`), or at the guest's vector with exactly
    /// one exception injected whose ELR_EL1 is the faulting PC. Nothing else.
    #[test]
    fn pc_moves_only_as_allowed(
        before in guest_regs(),
        vbar in prop_oneof![Just(0x4008_0000u64), any::<u64>()],
        sctlr: u64,
        ipa_bits in 32u32..=48,
    ) {
        let mut vm = vm(ipa_bits);
        let mut arch = FakeArch { vbar, sctlr, injected: Vec::new() };
        let mut regs = before;
        let outcome = handle_exit(&mut regs, &mut vm, &mut arch, &FakeS2);
        let ec = (before.esr >> 26) & 0x3f;
        prop_assert!(arch.injected.len() <= 1);
        // Nothing the handler does touches these.
        prop_assert_eq!(regs.sp_el0, before.sp_el0);
        prop_assert_eq!((regs.esr, regs.far, regs.hpfar, regs.vector),
            (before.esr, before.far, before.hpfar, before.vector));
        match before.vector {
            8 => {}
            9..=11 => {
                prop_assert_eq!(outcome, Outcome::Resume);
                prop_assert_eq!(regs, before);
                return Ok(());
            }
            _ => {
                prop_assert!(matches!(outcome, Outcome::Stop(_)));
                prop_assert_eq!(regs, before);
                return Ok(());
            }
        }
        if let Some(&(_, _, spsr, elr)) = arch.injected.first() {
            let offset = vector_offset(before.pstate);
            prop_assert!(offset.is_some(), "injected from pstate {:#x}", before.pstate);
            prop_assert_eq!(regs.pc, vbar.wrapping_add(offset.unwrap_or(0)));
            let pc = if before.pstate & 0b1_0000 != 0 { before.pc & 0xffff_ffff } else { before.pc };
            prop_assert_eq!(elr, pc);
            prop_assert_eq!(spsr, before.pstate);
            prop_assert_eq!(outcome, Outcome::Resume);
            prop_assert_ne!(ec, 0x16);
            prop_assert_ne!(ec, 0x17);
        } else {
            let stepped = step::next(before.pc, before.pstate, before.esr);
            let expected = match ec {
                0x16 => (before.pc, before.pstate),
                _ if !matches!(outcome, Outcome::Resume) => (before.pc, before.pstate),
                _ => stepped,
            };
            prop_assert_eq!((regs.pc, regs.pstate), expected, "EC {:#x} outcome {:?}", ec, outcome);
        }
        if ec != 0x16 && ec != 0x17 {
            // At most the load's transfer register changes.
            let changed = regs.x.iter().zip(before.x.iter()).filter(|(a, b)| a != b).count();
            prop_assert!(changed <= 1, "{} registers changed on EC {:#x}", changed, ec);
        }
    }

    /// Every HVC and SMC, answered or not, leaves x4-x30 and SP_EL0 as they
    /// were (SMCCC 1.1: x4-x17 are preserved; nothing above is a result).
    #[test]
    fn smccc_preserves_x4_to_x17(
        before in guest_regs(),
        smc: bool,
        imm16 in prop_oneof![Just(0u32), any::<u16>().prop_map(u32::from)],
        il: bool,
    ) {
        let mut vm = vm(40);
        let mut arch = FakeArch { vbar: 0x4008_0000, sctlr: 0, injected: Vec::new() };
        let mut regs = before;
        regs.vector = 8;
        regs.pstate = INITIAL_PSTATE;
        let ec: u64 = if smc { 0x17 } else { 0x16 };
        regs.esr = (ec << 26) | (u64::from(il) << 25) | u64::from(imm16);
        let start = regs;
        let outcome = handle_exit(&mut regs, &mut vm, &mut arch, &FakeS2);
        prop_assert!(!matches!(outcome, Outcome::Stop(_)));
        prop_assert!(arch.injected.is_empty());
        prop_assert_eq!(&regs.x[4..], &start.x[4..]);
        prop_assert_eq!(regs.sp_el0, start.sp_el0);
        prop_assert_eq!(regs.pstate, start.pstate);
        let stepped = step::next(start.pc, start.pstate, start.esr).0;
        prop_assert_eq!(regs.pc, if smc { stepped } else { start.pc });
        if imm16 != 0 {
            // Not an SMCCC call: NOT_SUPPORTED, whatever w0 asked.
            prop_assert_eq!(regs.x[0], u64::MAX);
        }
    }
}
