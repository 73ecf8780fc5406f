//! The device-tree writer over arbitrary call sequences: never a panic, and
//! every blob it finishes is read back by an independent parser (the `fdt`
//! crate) with the nodes, properties and reservations that were accepted.

use crate::vm::fdt_writer::FdtWriter;
use alloc::string::String;
use alloc::vec::Vec;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Begin(String),
    End,
    Property(String, Vec<u8>),
    U32(String, u32),
    U64(String, u64),
    Strings(String, Vec<String>),
    Reg(Vec<(u64, u64)>, u32, u32),
    Reservation(u64, u64),
    Phandle,
    BootCpu(u32),
}

/// Names from a small alphabet, so duplicates, suffixes of earlier names and
/// invalid characters all turn up.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec(
            prop::sample::select(vec!['a', 'b', 'c', '0', '1', '@', ',', '-', '#', '?']),
            0..6,
        )
        .prop_map(|v| v.into_iter().collect::<String>()),
        1 => prop::sample::select(vec!["reg", "compatible", "phandle", "#address-cells", "memory@40000000", ""])
            .prop_map(String::from),
        1 => proptest::collection::vec(any::<char>(), 0..40).prop_map(|v| v.into_iter().collect()),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => name().prop_map(Op::Begin),
        3 => Just(Op::End),
        3 => (name(), proptest::collection::vec(any::<u8>(), 0..16)).prop_map(|(n, v)| Op::Property(n, v)),
        1 => (name(), any::<u32>()).prop_map(|(n, v)| Op::U32(n, v)),
        1 => (name(), any::<u64>()).prop_map(|(n, v)| Op::U64(n, v)),
        1 => (name(), proptest::collection::vec(name(), 0..3)).prop_map(|(n, v)| Op::Strings(n, v)),
        1 => (proptest::collection::vec((any::<u64>(), prop_oneof![Just(0u64), any::<u64>()]), 0..3), 0u32..4, 0u32..4)
            .prop_map(|(r, a, s)| Op::Reg(r, a, s)),
        1 => (any::<u64>(), prop_oneof![Just(0u64), 1u64..0x1000, any::<u64>()]).prop_map(|(a, s)| Op::Reservation(a, s)),
        1 => Just(Op::Phandle),
        1 => any::<u32>().prop_map(Op::BootCpu),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn finished_blobs_parse_back(
        ops in proptest::collection::vec(op(), 0..40),
        close: bool,
    ) {
        let mut w = FdtWriter::new();
        let mut nodes = 0usize;
        let mut properties = 0usize;
        let mut reservations = Vec::new();
        let mut depth = 0usize;
        let mut boot_cpu = 0u32;
        // Start with a root most of the time, so sequences get somewhere.
        if close && w.begin_node("").is_ok() {
            nodes += 1;
            depth += 1;
        }
        for op in &ops {
            match op {
                Op::Begin(n) => {
                    if w.begin_node(n).is_ok() {
                        nodes += 1;
                        depth += 1;
                    }
                }
                Op::End => {
                    if w.end_node().is_ok() {
                        depth -= 1;
                    }
                }
                Op::Property(n, v) => properties += usize::from(w.property(n, v).is_ok()),
                Op::U32(n, v) => properties += usize::from(w.property_u32(n, *v).is_ok()),
                Op::U64(n, v) => properties += usize::from(w.property_u64(n, *v).is_ok()),
                Op::Strings(n, v) => {
                    let v: Vec<&str> = v.iter().map(String::as_str).collect();
                    properties += usize::from(w.property_string_list(n, &v).is_ok());
                }
                Op::Reg(r, a, s) => properties += usize::from(w.property_reg(r, *a, *s).is_ok()),
                Op::Reservation(a, s) => {
                    if w.add_reservation(*a, *s).is_ok() {
                        reservations.push((*a, *s));
                    }
                }
                Op::Phandle => {
                    if let Ok(p) = w.alloc_phandle() {
                        properties += usize::from(w.property_phandle(p).is_ok());
                    }
                }
                Op::BootCpu(id) => {
                    w.set_boot_cpuid_phys(*id);
                    boot_cpu = *id;
                }
            }
        }
        if close {
            for _ in 0..depth {
                prop_assert!(w.end_node().is_ok());
            }
            depth = 0;
        }
        let finished = w.finish();
        let Ok(blob) = finished else {
            prop_assert!(depth > 0 || nodes == 0);
            return Ok(());
        };
        prop_assert_eq!(depth, 0);
        let fdt = fdt::Fdt::new(&blob);
        prop_assert!(fdt.is_ok(), "{:?}", fdt.err());
        let Ok(fdt) = fdt else { return Ok(()) };
        prop_assert_eq!(fdt.total_size(), blob.len());
        prop_assert_eq!(fdt.all_nodes().count(), nodes);
        let read: usize = fdt.all_nodes().map(|n| n.properties().count()).sum();
        prop_assert_eq!(read, properties);
        let reserved: Vec<(u64, u64)> = fdt
            .memory_reservations()
            .map(|r| (r.address() as u64, r.size() as u64))
            .collect();
        prop_assert_eq!(reserved, reservations);
        prop_assert_eq!(u32::from_be_bytes([blob[28], blob[29], blob[30], blob[31]]), boot_cpu);
    }
}
