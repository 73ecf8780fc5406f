//! Event records (IHI 0070, 7.3 "Event records"): 32 bytes each.
//!
//! Double word 0: event type [7:0], SSV [11], SubstreamID [31:12],
//! StreamID [63:32]. For the translation faults (0x10-0x13) and F_WALK_EABT,
//! double word 1 holds Stall [31], PnU [33], InD [34], RnW [35], NSIPA [38],
//! S2 [39] and CLASS [41:40]; double word 2 the input address; double word 3
//! the faulting IPA (bits [51:3]) or fetch address. Every input decodes:
//! unknown types are reported by number, never trusted.

use core::fmt;

/// Bytes in an event record.
pub const EVENT_BYTES: usize = 32;

/// An event's type (7.3, table 7-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// 0x01 F_UUT: unsupported upstream transaction.
    Uut,
    /// 0x02 C_BAD_STREAMID: StreamID out of range or without a table.
    BadStreamId,
    /// 0x03 F_STE_FETCH.
    SteFetch,
    /// 0x04 C_BAD_STE: an invalid or malformed STE.
    BadSte,
    /// 0x05 F_BAD_ATS_TREQ.
    BadAtsTreq,
    /// 0x06 F_STREAM_DISABLED.
    StreamDisabled,
    /// 0x07 F_TRANSL_FORBIDDEN.
    TranslForbidden,
    /// 0x08 C_BAD_SUBSTREAMID.
    BadSubstreamId,
    /// 0x09 F_CD_FETCH.
    CdFetch,
    /// 0x0a C_BAD_CD.
    BadCd,
    /// 0x0b F_WALK_EABT: external abort on a table walk.
    WalkEabt,
    /// 0x10 F_TRANSLATION: no valid translation.
    Translation,
    /// 0x11 F_ADDR_SIZE: an address beyond the input or output size.
    AddrSize,
    /// 0x12 F_ACCESS: access flag fault.
    Access,
    /// 0x13 F_PERMISSION.
    Permission,
    /// 0x20 F_TLB_CONFLICT.
    TlbConflict,
    /// 0x21 F_CFG_CONFLICT.
    CfgConflict,
    /// 0x24 E_PAGE_REQUEST.
    PageRequest,
    /// 0x25 F_VMS_FETCH.
    VmsFetch,
    /// Anything else.
    Unknown(u8),
}

impl EventType {
    /// The type of event number `n`.
    pub fn from_raw(n: u8) -> Self {
        match n {
            0x01 => Self::Uut,
            0x02 => Self::BadStreamId,
            0x03 => Self::SteFetch,
            0x04 => Self::BadSte,
            0x05 => Self::BadAtsTreq,
            0x06 => Self::StreamDisabled,
            0x07 => Self::TranslForbidden,
            0x08 => Self::BadSubstreamId,
            0x09 => Self::CdFetch,
            0x0a => Self::BadCd,
            0x0b => Self::WalkEabt,
            0x10 => Self::Translation,
            0x11 => Self::AddrSize,
            0x12 => Self::Access,
            0x13 => Self::Permission,
            0x20 => Self::TlbConflict,
            0x21 => Self::CfgConflict,
            0x24 => Self::PageRequest,
            0x25 => Self::VmsFetch,
            n => Self::Unknown(n),
        }
    }

    /// The specification's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uut => "F_UUT",
            Self::BadStreamId => "C_BAD_STREAMID",
            Self::SteFetch => "F_STE_FETCH",
            Self::BadSte => "C_BAD_STE",
            Self::BadAtsTreq => "F_BAD_ATS_TREQ",
            Self::StreamDisabled => "F_STREAM_DISABLED",
            Self::TranslForbidden => "F_TRANSL_FORBIDDEN",
            Self::BadSubstreamId => "C_BAD_SUBSTREAMID",
            Self::CdFetch => "F_CD_FETCH",
            Self::BadCd => "C_BAD_CD",
            Self::WalkEabt => "F_WALK_EABT",
            Self::Translation => "F_TRANSLATION",
            Self::AddrSize => "F_ADDR_SIZE",
            Self::Access => "F_ACCESS",
            Self::Permission => "F_PERMISSION",
            Self::TlbConflict => "F_TLB_CONFLICT",
            Self::CfgConflict => "F_CFG_CONFLICT",
            Self::PageRequest => "E_PAGE_REQUEST",
            Self::VmsFetch => "F_VMS_FETCH",
            Self::Unknown(_) => "unknown",
        }
    }

    /// Whether the record carries an input address in double word 2.
    fn has_input_address(self) -> bool {
        matches!(
            self,
            Self::Uut
                | Self::TranslForbidden
                | Self::WalkEabt
                | Self::Translation
                | Self::AddrSize
                | Self::Access
                | Self::Permission
                | Self::TlbConflict
        )
    }

    /// Whether the record is a translation fault with the fault fields of
    /// double word 1 and an IPA in double word 3.
    fn is_translation_fault(self) -> bool {
        matches!(
            self,
            Self::WalkEabt | Self::Translation | Self::AddrSize | Self::Access | Self::Permission
        )
    }
}

/// What a faulting access was doing when it faulted (CLASS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultClass {
    /// CD fetch.
    Cd,
    /// Stage-1 table walk.
    Tt,
    /// The input address itself.
    In,
    /// Reserved value.
    Reserved,
}

/// The fault fields of a translation fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// RnW: a read (else a write).
    pub read: bool,
    /// S2: the fault is in stage 2.
    pub stage2: bool,
    /// CLASS.
    pub class: FaultClass,
    /// InD: an instruction fetch.
    pub instruction: bool,
    /// PnU: privileged.
    pub privileged: bool,
    /// The faulting IPA (double word 3, bits [51:3] shown as an address).
    pub ipa: u64,
}

/// A decoded event record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The type.
    pub kind: EventType,
    /// The StreamID.
    pub stream_id: u32,
    /// The SubstreamID, when SSV is set.
    pub substream_id: Option<u32>,
    /// The input address (the device's DMA address), for the types that carry one.
    pub input_address: Option<u64>,
    /// For translation faults, their details.
    pub fault: Option<Fault>,
}

impl Event {
    /// Decodes a record from its four double words. Never fails.
    pub fn decode(w: &[u64; 4]) -> Self {
        let [d0, d1, d2, d3] = *w;
        let kind = EventType::from_raw((d0 & 0xff) as u8);
        let fault = kind.is_translation_fault().then_some(Fault {
            read: d1 & (1 << 35) != 0,
            stage2: d1 & (1 << 39) != 0,
            class: match (d1 >> 40) & 3 {
                0 => FaultClass::Cd,
                1 => FaultClass::Tt,
                2 => FaultClass::In,
                _ => FaultClass::Reserved,
            },
            instruction: d1 & (1 << 34) != 0,
            privileged: d1 & (1 << 33) != 0,
            ipa: d3 & 0x000f_ffff_ffff_fff8,
        });
        Self {
            kind,
            stream_id: (d0 >> 32) as u32,
            substream_id: (d0 & (1 << 11) != 0).then_some(((d0 >> 12) & 0xf_ffff) as u32),
            input_address: kind.has_input_address().then_some(d2),
            fault,
        }
    }

    /// Decodes a record from its 32 bytes (little endian).
    pub fn from_bytes(b: &[u8; EVENT_BYTES]) -> Self {
        let mut w = [0u64; 4];
        for (word, chunk) in w.iter_mut().zip(b.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            *word = u64::from_le_bytes(bytes);
        }
        Self::decode(&w)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.name())?;
        if let EventType::Unknown(n) = self.kind {
            write!(f, " (type {n:#04x})")?;
        }
        write!(f, " StreamID {:#x}", self.stream_id)?;
        if let Some(ss) = self.substream_id {
            write!(f, " SubstreamID {ss:#x}")?;
        }
        if let Some(a) = self.input_address {
            write!(f, " address {a:#x}")?;
        }
        if let Some(fault) = self.fault {
            write!(
                f,
                " {} {}{}",
                if fault.read { "read" } else { "write" },
                if fault.stage2 { "stage 2" } else { "stage 1" },
                match fault.class {
                    FaultClass::Cd => ", CD fetch",
                    FaultClass::Tt => ", table walk",
                    FaultClass::In => "",
                    FaultClass::Reserved => ", class reserved",
                }
            )?;
            if fault.stage2 {
                write!(f, " IPA {:#x}", fault.ipa)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn a_stage2_translation_fault_as_qemu_records_it() {
        // F_TRANSLATION, StreamID 0x10, write, S2, CLASS = IN, address
        // 0x1_0000_0000 (QEMU's smmuv3_record_event layout).
        let w = [
            0x10_0000_0010,
            (1 << 39) | (2 << 40),
            0x1_0000_0000,
            0x1_0000_0000,
        ];
        let e = Event::decode(&w);
        assert_eq!(e.kind, EventType::Translation);
        assert_eq!(e.stream_id, 0x10);
        assert_eq!(e.substream_id, None);
        assert_eq!(e.input_address, Some(0x1_0000_0000));
        let fault = e.fault.unwrap();
        assert!(!fault.read && fault.stage2);
        assert_eq!(fault.class, FaultClass::In);
        assert_eq!(
            e.to_string(),
            "F_TRANSLATION StreamID 0x10 address 0x100000000 write stage 2 IPA 0x100000000"
        );
    }

    #[test]
    fn bytes_and_words_agree_and_unknown_types_are_named_by_number() {
        let mut b = [0u8; EVENT_BYTES];
        b[0] = 0x7e;
        b[1] = 0x08; // SSV
        b[4] = 0x22; // StreamID 0x22
        let e = Event::from_bytes(&b);
        assert_eq!(e.kind, EventType::Unknown(0x7e));
        assert_eq!(e.stream_id, 0x22);
        assert_eq!(e.substream_id, Some(0));
        assert_eq!(e.input_address, None);
        assert_eq!(
            e.to_string(),
            "unknown (type 0x7e) StreamID 0x22 SubstreamID 0x0"
        );
    }

    #[test]
    fn configuration_errors_carry_no_address() {
        let e = Event::decode(&[0x8_0000_0002, !0, !0, !0]);
        assert_eq!(e.kind, EventType::BadStreamId);
        assert_eq!(e.stream_id, 8);
        assert_eq!((e.input_address, e.fault), (None, None));
    }
}
