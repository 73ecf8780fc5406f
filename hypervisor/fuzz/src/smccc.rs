//! Sequences of SMCCC calls against one VM's PSCI state: no panic, only
//! x0-x3 written back, hypercalls only by HVC, unknown IDs answered -1, and
//! the vcpu list never changed.

use hypervisor::vm::hypercall;
use hypervisor::vm::psci::{handle, is_vendor_hyp, Action, Conduit, PsciState, SmcccCall};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

fn run(u: &mut Unstructured) -> Result<()> {
    let mut state = PsciState::new(u.arbitrary()?);
    for _ in 0..u.int_in_range(0..=9)? {
        let _ = state.add_vcpu(u.int_in_range(0..=7)?);
    }
    let _ = state.set_current(u.int_in_range(0..=7)?);
    let vcpus: Vec<u64> = state.vcpus().iter().map(|v| v.mpidr).collect();
    while !u.is_empty() {
        let call = SmcccCall {
            function_id: if u.ratio(3, 4)? {
                let base = *u.choose(&[
                    0x8000_0000u32,
                    0x8400_0000,
                    0xC400_0000,
                    0x8600_0000,
                    0xC600_FF00,
                ])?;
                base | u32::from(u.arbitrary::<u8>()? & 0x1f)
            } else {
                u.arbitrary()?
            },
            args: u.arbitrary()?,
            conduit: if u.arbitrary()? {
                Conduit::Hvc
            } else {
                Conduit::Smc
            },
            imm16: if u.ratio(7, 8)? { 0 } else { u.arbitrary()? },
        };
        let x: [u64; 31] = u.arbitrary()?;
        let outcome = handle(&call, &mut state);
        let mut after = x;
        outcome.write_back(&mut after);
        assert_eq!(after[4..], x[4..]);
        if call.imm16 != 0 {
            assert_eq!(outcome.regs, Some([u64::MAX, 0, 0, 0]));
        }
        if outcome.action == Action::Hypercall {
            assert_eq!(call.conduit, Conduit::Hvc);
            assert!(is_vendor_hyp(call.function_id));
            // The hypercall decoder takes the same registers: total too.
            if let Ok(h) = hypercall::decode(call.function_id, &call.args) {
                let _ = hypercall::answer_query(&h);
            }
        }
        if let Action::CpuOn { target_mpidr, .. } = outcome.action {
            assert_eq!(state.power(target_mpidr), Some(true));
        }
        let now: Vec<u64> = state.vcpus().iter().map(|v| v.mpidr).collect();
        assert_eq!(now, vcpus);
    }
    Ok(())
}

/// What the fuzz target runs for one input, and the corpus replay test too.
pub fn fuzz(data: &[u8]) {
    let _ = run(&mut Unstructured::new(data));
}
