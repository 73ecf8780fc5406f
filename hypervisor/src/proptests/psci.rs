//! SMCCC and PSCI over arbitrary calls: only x0-x3 are ever written, unknown
//! function IDs get NOT_SUPPORTED (-1), and the power state stays consistent
//! (hostile-guest items 15-19).

use crate::vm::psci::{fid, handle, ret, Action, Conduit, PsciState, SmcccCall};
use proptest::prelude::*;

/// Every function ID `handle` implements.
const KNOWN: [u32; 26] = [
    fid::SMCCC_VERSION,
    fid::SMCCC_ARCH_FEATURES,
    fid::PSCI_VERSION,
    fid::PSCI_FEATURES,
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
    // Listed so that their neighbours are tried; answered NOT_SUPPORTED.
    fid::SMCCC_ARCH_SOC_ID,
    fid::SMCCC_ARCH_WORKAROUND_1,
    fid::SMCCC_ARCH_WORKAROUND_2,
    fid::SMCCC_ARCH_WORKAROUND_3,
    fid::MIGRATE_32,
    fid::MIGRATE_64,
    fid::MIGRATE_INFO_UP_CPU_32,
    fid::MIGRATE_INFO_UP_CPU_64,
    fid::SYSTEM_SUSPEND_32,
    fid::SYSTEM_SUSPEND_64,
];

/// The implemented IDs: the first 16 of [`KNOWN`].
fn implemented(id: u32) -> bool {
    KNOWN.iter().take(16).any(|k| *k == id)
}

/// The vendor-specific hypervisor service's fast calls (owning entity 6).
fn vendor_hyp(id: u32) -> bool {
    id & 0x8000_0000 != 0 && (id >> 24) & 0x3f == 6 && id & 0x00ff_0000 == 0
}

fn function_id() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(KNOWN.to_vec()),
        // One bit away from a known ID: the near misses a decoder gets wrong.
        (prop::sample::select(KNOWN.to_vec()), 0u32..32).prop_map(|(k, b)| k ^ (1 << b)),
        (0u32..0x100).prop_map(|n| 0x8600_0000 | n),
        (0u32..0x100).prop_map(|n| 0xC600_FF00 | n),
        any::<u32>(),
    ]
}

fn mpidr() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..4, Just(0x100), any::<u64>()]
}

prop_compose! {
    fn call()(
        function_id in function_id(),
        args in proptest::array::uniform7(prop_oneof![mpidr(), any::<u64>()]),
        hvc: bool,
        imm16 in prop_oneof![4 => Just(0u16), 1 => any::<u16>()],
    ) -> SmcccCall {
        SmcccCall {
            function_id,
            args,
            conduit: if hvc { Conduit::Hvc } else { Conduit::Smc },
            imm16,
        }
    }
}

fn state(vcpus: &[u64], current: u64) -> PsciState {
    let mut state = PsciState::new(0);
    for &m in vcpus {
        let _ = state.add_vcpu(m);
    }
    let _ = state.set_current(current);
    state
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Written back, a call's results touch x0-x3 only.
    #[test]
    fn only_x0_to_x3_change(
        call in call(),
        x in proptest::array::uniform31(any::<u64>()),
        vcpus in proptest::collection::vec(mpidr(), 0..10),
        current in mpidr(),
    ) {
        let mut state = state(&vcpus, current);
        let outcome = handle(&call, &mut state);
        let mut after = x;
        outcome.write_back(&mut after);
        prop_assert_eq!(&after[4..], &x[4..]);
        if outcome.regs.is_none() {
            prop_assert_eq!(after, x);
        }
        // A hypercall is only ever an HVC to the vendor service.
        if outcome.action == Action::Hypercall {
            prop_assert!(call.conduit == Conduit::Hvc && vendor_hyp(call.function_id));
            prop_assert_eq!(call.imm16, 0);
        }
    }

    /// An ID nothing implements, or any call with a non-zero immediate, is
    /// NOT_SUPPORTED: -1 in all of x0, zeros in x1-x3, nothing else done.
    #[test]
    fn unknown_ids_are_not_supported(
        call in call(),
        vcpus in proptest::collection::vec(mpidr(), 0..10),
    ) {
        let answered = implemented(call.function_id)
            || (vendor_hyp(call.function_id) && call.conduit == Conduit::Hvc);
        prop_assume!(!answered || call.imm16 != 0);
        let mut state = state(&vcpus, 0);
        let before = state.clone();
        let outcome = handle(&call, &mut state);
        prop_assert_eq!(outcome.regs, Some([ret::NOT_SUPPORTED as i64 as u64, 0, 0, 0]));
        prop_assert_eq!(outcome.action, Action::None);
        prop_assert_eq!(state, before);
    }
}

proptest! {
    // Each case is a sequence of calls: fewer cases keep the run short.
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Over any sequence of calls the vcpu list never changes, and CPU_ON
    /// succeeds only for a vcpu that exists and was off.
    #[test]
    fn power_state_stays_consistent(
        calls in proptest::collection::vec(call(), 1..32),
        vcpus in proptest::collection::vec(0u64..6, 0..8),
    ) {
        let mut state = state(&vcpus, 0);
        let list: alloc::vec::Vec<u64> = state.vcpus().iter().map(|v| v.mpidr).collect();
        for call in calls {
            let target = call.args[0];
            let was = state.power(if call.function_id & (1 << 30) != 0 { target } else { target & 0xffff_ffff });
            let outcome = handle(&call, &mut state);
            let now: alloc::vec::Vec<u64> = state.vcpus().iter().map(|v| v.mpidr).collect();
            prop_assert_eq!(&now, &list);
            if let Action::CpuOn { target_mpidr, entry, .. } = outcome.action {
                prop_assert_eq!(was, Some(false));
                prop_assert_eq!(state.power(target_mpidr), Some(true));
                prop_assert_eq!(entry % 4, 0);
            }
        }
    }
}
