//! Any ESR_EL2 value decodes and formats; the MMIO access it describes agrees
//! with the bus's own extension and truncation.

use hypervisor::arch::aarch64::esr::{decode, Decoded, Esr, MmioAccess};
use hypervisor::devices::mmio::{extend, truncate};
use libfuzzer_sys::arbitrary::{Result, Unstructured};

fn run(u: &mut Unstructured) -> Result<()> {
    let raw: u64 = u.arbitrary()?;
    let value: u64 = u.arbitrary()?;
    let esr = Esr::new(raw);
    let decoded = decode(raw);
    assert_eq!(decoded.class(), esr.ec());
    assert_eq!(decoded.class().raw(), esr.ec_raw());
    let _ = format!("{esr} {decoded} {decoded:?}");
    if let Decoded::DataAbort { iss, .. } = decoded {
        let _ = format!("{} {}", iss, iss.dfsc());
        if let Some(a) = MmioAccess::from_data_abort(iss) {
            assert!(matches!(a.size, 1 | 2 | 4 | 8));
            assert_eq!(
                a.load_value(value),
                extend(value, a.size, a.sign_extend, a.sixty_four)
            );
            assert_eq!(a.store_value(value), truncate(value, a.size));
        } else {
            assert!(!iss.isv());
        }
    }
    Ok(())
}

/// What the fuzz target runs for one input, and the corpus replay test too.
pub fn fuzz(data: &[u8]) {
    let mut u = Unstructured::new(data);
    while !u.is_empty() {
        if run(&mut u).is_err() {
            break;
        }
    }
}
