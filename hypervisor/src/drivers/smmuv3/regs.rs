//! The SMMUv3 register block and its ID registers, decoded.
//!
//! Offsets and fields follow the Arm System Memory Management Unit
//! Architecture Specification, SMMU architecture version 3 (IHI 0070),
//! chapter 6 "Memory map and registers". Page 1 (at 64 KiB) holds the event
//! queue's PROD and CONS registers (6.3.27, 6.3.28).

use core::ptr::NonNull;

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs, LocalRegisterCopy};

register_bitfields! {
    u32,

    /// SMMU_IDR0 (6.3.1).
    pub IDR0 [
        /// Stage 2 translation supported.
        S2P OFFSET(0) NUMBITS(1) [],
        /// Stage 1 translation supported.
        S1P OFFSET(1) NUMBITS(1) [],
        /// Translation table formats: 0b10 AArch64 only, 0b11 both.
        TTF OFFSET(2) NUMBITS(2) [],
        /// Coherent access to tables, queues and (with coherent masters) data.
        COHACC OFFSET(4) NUMBITS(1) [],
        /// 16-bit VMIDs.
        VMID16 OFFSET(18) NUMBITS(1) [],
        /// Table endianness: 0b00 mixed, 0b10 little, 0b11 big.
        TTENDIAN OFFSET(21) NUMBITS(2) [],
        /// Multi-level stream tables: 0b00 linear only, 0b01 two levels.
        ST_LEVEL OFFSET(27) NUMBITS(2) [],
    ],

    /// SMMU_IDR1 (6.3.2).
    pub IDR1 [
        /// StreamID bits.
        SIDSIZE OFFSET(0) NUMBITS(6) [],
        /// log2 of the largest event queue.
        EVENTQS OFFSET(16) NUMBITS(5) [],
        /// log2 of the largest command queue.
        CMDQS OFFSET(21) NUMBITS(5) [],
        /// Queue bases are fixed.
        QUEUES_PRESET OFFSET(29) NUMBITS(1) [],
        /// Table bases are fixed.
        TABLES_PRESET OFFSET(30) NUMBITS(1) [],
    ],

    /// SMMU_IDR3 (6.3.4).
    pub IDR3 [
        /// STE.S2FWB supported (stage-2 forced write-back, as FEAT_S2FWB).
        FWB OFFSET(8) NUMBITS(1) [],
    ],

    /// SMMU_IDR5 (6.3.6).
    pub IDR5 [
        /// Output address size, the PARange encoding.
        OAS OFFSET(0) NUMBITS(3) [],
        /// 4 KiB translation granule.
        GRAN4K OFFSET(4) NUMBITS(1) [],
    ],

    /// SMMU_CR0 and SMMU_CR0ACK (6.3.9, 6.3.10).
    pub CR0 [
        /// Translation enable.
        SMMUEN OFFSET(0) NUMBITS(1) [],
        /// Event queue enable.
        EVENTQEN OFFSET(2) NUMBITS(1) [],
        /// Command queue enable.
        CMDQEN OFFSET(3) NUMBITS(1) [],
    ],

    /// SMMU_CR1 (6.3.11): table and queue access attributes.
    pub CR1 [
        QUEUE_IC OFFSET(0) NUMBITS(2) [],
        QUEUE_OC OFFSET(2) NUMBITS(2) [],
        QUEUE_SH OFFSET(4) NUMBITS(2) [],
        TABLE_IC OFFSET(6) NUMBITS(2) [],
        TABLE_OC OFFSET(8) NUMBITS(2) [],
        TABLE_SH OFFSET(10) NUMBITS(2) [],
    ],

    /// SMMU_GBPA (6.3.14): what transactions get while SMMUEN = 0.
    pub GBPA [
        /// Abort instead of bypass.
        ABORT OFFSET(20) NUMBITS(1) [],
        /// Set to apply the other fields; cleared by the SMMU when done.
        UPDATE OFFSET(31) NUMBITS(1) [],
    ],

    /// SMMU_STRTAB_BASE_CFG (6.3.24).
    pub STRTAB_BASE_CFG [
        /// log2 of the number of StreamIDs the table covers.
        LOG2SIZE OFFSET(0) NUMBITS(6) [],
        /// StreamID bits that index a level-2 table.
        SPLIT OFFSET(6) NUMBITS(5) [],
        /// 0b00 linear, 0b01 two levels.
        FMT OFFSET(16) NUMBITS(2) [],
    ],
}

register_structs! {
    /// SMMU register pages 0 and 1 (IHI 0070, 6.2 "Register overview").
    #[allow(non_snake_case)]
    pub Registers {
        (0x0000 => pub IDR0: ReadOnly<u32, IDR0::Register>),
        (0x0004 => pub IDR1: ReadOnly<u32, IDR1::Register>),
        (0x0008 => pub IDR2: ReadOnly<u32>),
        (0x000c => pub IDR3: ReadOnly<u32, IDR3::Register>),
        (0x0010 => pub IDR4: ReadOnly<u32>),
        (0x0014 => pub IDR5: ReadOnly<u32, IDR5::Register>),
        (0x0018 => pub IIDR: ReadOnly<u32>),
        (0x001c => pub AIDR: ReadOnly<u32>),
        (0x0020 => pub CR0: ReadWrite<u32, CR0::Register>),
        (0x0024 => pub CR0ACK: ReadOnly<u32, CR0::Register>),
        (0x0028 => pub CR1: ReadWrite<u32, CR1::Register>),
        (0x002c => pub CR2: ReadWrite<u32>),
        (0x0030 => _reserved0),
        (0x0040 => pub STATUSR: ReadOnly<u32>),
        (0x0044 => pub GBPA: ReadWrite<u32, GBPA::Register>),
        (0x0048 => pub AGBPA: ReadWrite<u32>),
        (0x004c => _reserved1),
        (0x0050 => pub IRQ_CTRL: ReadWrite<u32>),
        (0x0054 => pub IRQ_CTRLACK: ReadOnly<u32>),
        (0x0058 => _reserved2),
        (0x0060 => pub GERROR: ReadOnly<u32>),
        (0x0064 => pub GERRORN: ReadWrite<u32>),
        (0x0068 => pub GERROR_IRQ_CFG0: ReadWrite<u64>),
        (0x0070 => _reserved3),
        (0x0080 => pub STRTAB_BASE: ReadWrite<u64>),
        (0x0088 => pub STRTAB_BASE_CFG: ReadWrite<u32, STRTAB_BASE_CFG::Register>),
        (0x008c => _reserved4),
        (0x0090 => pub CMDQ_BASE: ReadWrite<u64>),
        (0x0098 => pub CMDQ_PROD: ReadWrite<u32>),
        (0x009c => pub CMDQ_CONS: ReadOnly<u32>),
        (0x00a0 => pub EVENTQ_BASE: ReadWrite<u64>),
        (0x00a8 => _reserved5),
        (0x100a8 => pub EVENTQ_PROD: ReadOnly<u32>),
        (0x100ac => pub EVENTQ_CONS: ReadWrite<u32>),
        (0x100b0 => @END),
    }
}

/// Bytes of register space the driver touches: pages 0 and 1.
pub const REGION_SIZE: u64 = 0x2_0000;

/// The registers the driver uses, by name, so a fake SMMU can stand in for
/// the MMIO block in host tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    /// SMMU_IDR0.
    Idr0,
    /// SMMU_IDR1.
    Idr1,
    /// SMMU_IDR3.
    Idr3,
    /// SMMU_IDR5.
    Idr5,
    /// SMMU_CR0.
    Cr0,
    /// SMMU_CR0ACK.
    Cr0Ack,
    /// SMMU_CR1.
    Cr1,
    /// SMMU_CR2.
    Cr2,
    /// SMMU_GBPA.
    Gbpa,
    /// SMMU_IRQ_CTRL.
    IrqCtrl,
    /// SMMU_GERROR.
    Gerror,
    /// SMMU_GERRORN.
    Gerrorn,
    /// SMMU_STRTAB_BASE_CFG.
    StrtabBaseCfg,
    /// SMMU_CMDQ_PROD.
    CmdqProd,
    /// SMMU_CMDQ_CONS.
    CmdqCons,
    /// SMMU_EVENTQ_PROD (page 1).
    EventqProd,
    /// SMMU_EVENTQ_CONS (page 1).
    EventqCons,
}

/// The 64-bit registers the driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg64 {
    /// SMMU_STRTAB_BASE.
    StrtabBase,
    /// SMMU_CMDQ_BASE.
    CmdqBase,
    /// SMMU_EVENTQ_BASE.
    EventqBase,
}

/// What the driver needs from an SMMU: its registers, and a way to make its
/// memory writes visible to the SMMU (and the SMMU's to it).
pub trait SmmuIo {
    /// Reads a 32-bit register.
    fn read(&mut self, reg: Reg) -> u32;
    /// Writes a 32-bit register.
    fn write(&mut self, reg: Reg, value: u32);
    /// Writes a 64-bit register.
    fn write64(&mut self, reg: Reg64, value: u64);
    /// Makes the CPU's writes to `[pa, pa + len)` visible to the SMMU before
    /// the next register write (a DSB; with a non-coherent SMMU, a clean to
    /// the point of coherency first).
    fn publish(&mut self, pa: u64, len: usize);
    /// Makes the SMMU's writes to `[pa, pa + len)` visible to the CPU (with
    /// a non-coherent SMMU, an invalidate first).
    fn refresh(&mut self, pa: u64, len: usize);
}

/// The real register block.
pub struct MmioSmmu {
    regs: NonNull<Registers>,
    /// IDR0.COHACC: whether the SMMU snoops the CPU caches.
    coherent: bool,
    /// The CPU's smallest data-cache line.
    line: u64,
}

// SAFETY: the block is only reached through `&mut self`, and MMIO to it is
// valid from any CPU.
unsafe impl Send for MmioSmmu {}

impl MmioSmmu {
    /// The SMMU at `base`.
    ///
    /// # Safety
    ///
    /// `base` must point at an SMMUv3's register pages 0 and 1
    /// ([`REGION_SIZE`] bytes), mapped as Device memory, used by nothing else.
    pub unsafe fn new(base: *mut u8, line: u64) -> Option<Self> {
        let regs = NonNull::new(base.cast::<Registers>())?;
        let mut s = Self {
            regs,
            coherent: false,
            line,
        };
        s.coherent = Features::decode(&s.id_registers()).coherent;
        Some(s)
    }

    fn regs(&self) -> &Registers {
        // SAFETY: per `new`, `regs` points at the mapped register block.
        unsafe { self.regs.as_ref() }
    }

    /// IDR0, IDR1, IDR3 and IDR5.
    pub fn id_registers(&self) -> [u32; 4] {
        let r = self.regs();
        [r.IDR0.get(), r.IDR1.get(), r.IDR3.get(), r.IDR5.get()]
    }
}

impl SmmuIo for MmioSmmu {
    fn read(&mut self, reg: Reg) -> u32 {
        let r = self.regs();
        match reg {
            Reg::Idr0 => r.IDR0.get(),
            Reg::Idr1 => r.IDR1.get(),
            Reg::Idr3 => r.IDR3.get(),
            Reg::Idr5 => r.IDR5.get(),
            Reg::Cr0 => r.CR0.get(),
            Reg::Cr0Ack => r.CR0ACK.get(),
            Reg::Cr1 => r.CR1.get(),
            Reg::Cr2 => r.CR2.get(),
            Reg::Gbpa => r.GBPA.get(),
            Reg::IrqCtrl => r.IRQ_CTRL.get(),
            Reg::Gerror => r.GERROR.get(),
            Reg::Gerrorn => r.GERRORN.get(),
            Reg::StrtabBaseCfg => r.STRTAB_BASE_CFG.get(),
            Reg::CmdqProd => r.CMDQ_PROD.get(),
            Reg::CmdqCons => r.CMDQ_CONS.get(),
            Reg::EventqProd => r.EVENTQ_PROD.get(),
            Reg::EventqCons => r.EVENTQ_CONS.get(),
        }
    }

    fn write(&mut self, reg: Reg, value: u32) {
        let r = self.regs();
        match reg {
            Reg::Cr0 => r.CR0.set(value),
            Reg::Cr1 => r.CR1.set(value),
            Reg::Cr2 => r.CR2.set(value),
            Reg::Gbpa => r.GBPA.set(value),
            Reg::IrqCtrl => r.IRQ_CTRL.set(value),
            Reg::Gerrorn => r.GERRORN.set(value),
            Reg::StrtabBaseCfg => r.STRTAB_BASE_CFG.set(value),
            Reg::CmdqProd => r.CMDQ_PROD.set(value),
            Reg::EventqCons => r.EVENTQ_CONS.set(value),
            // Read-only registers: nothing to write.
            Reg::Idr0
            | Reg::Idr1
            | Reg::Idr3
            | Reg::Idr5
            | Reg::Cr0Ack
            | Reg::Gerror
            | Reg::CmdqCons
            | Reg::EventqProd => {}
        }
    }

    fn write64(&mut self, reg: Reg64, value: u64) {
        let r = self.regs();
        match reg {
            Reg64::StrtabBase => r.STRTAB_BASE.set(value),
            Reg64::CmdqBase => r.CMDQ_BASE.set(value),
            Reg64::EventqBase => r.EVENTQ_BASE.set(value),
        }
    }

    fn publish(&mut self, pa: u64, len: usize) {
        #[cfg(target_os = "none")]
        {
            if !self.coherent {
                // SAFETY: the range is the driver's own table or queue memory,
                // mapped Normal in the EL2 map; cleaning loses nothing.
                unsafe { crate::arch::aarch64::dma::clean_to_poc(pa, len as u64, self.line) };
            }
            crate::arch::aarch64::dma::write_barrier();
        }
        #[cfg(not(target_os = "none"))]
        let _ = (pa, len, self.line, self.coherent);
    }

    fn refresh(&mut self, pa: u64, len: usize) {
        #[cfg(target_os = "none")]
        {
            crate::arch::aarch64::dma::read_barrier();
            if !self.coherent {
                // SAFETY: the range is the driver's event queue, which the CPU
                // only reads: discarding its lines loses nothing.
                unsafe { crate::arch::aarch64::dma::invalidate(pa, len as u64, self.line) };
            }
        }
        #[cfg(not(target_os = "none"))]
        let _ = (pa, len);
    }
}

/// What an SMMU offers, from its ID registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Stage 2 translation (IDR0.S2P).
    pub stage2: bool,
    /// Stage 1 translation (IDR0.S1P).
    pub stage1: bool,
    /// AArch64 table format (IDR0.TTF bit 1).
    pub aarch64_tables: bool,
    /// Little-endian tables (IDR0.TTENDIAN is mixed or little).
    pub little_endian: bool,
    /// Coherent table, queue and data access (IDR0.COHACC).
    pub coherent: bool,
    /// 16-bit VMIDs (IDR0.VMID16).
    pub vmid16: bool,
    /// Two-level stream tables (IDR0.ST_LEVEL = 0b01).
    pub two_level_streams: bool,
    /// StreamID bits (IDR1.SIDSIZE).
    pub sid_bits: u8,
    /// log2 of the largest command queue (IDR1.CMDQS).
    pub cmdq_log2: u8,
    /// log2 of the largest event queue (IDR1.EVENTQS).
    pub eventq_log2: u8,
    /// Queue or table bases fixed by the implementation (IDR1 presets).
    pub preset: bool,
    /// STE.S2FWB (IDR3.FWB).
    pub fwb: bool,
    /// Output address size field (IDR5.OAS, PARange encoding).
    pub oas: u8,
    /// 4 KiB granule (IDR5.GRAN4K).
    pub gran4k: bool,
}

impl Features {
    /// Decodes `[IDR0, IDR1, IDR3, IDR5]`.
    pub fn decode(idr: &[u32; 4]) -> Self {
        let [i0, i1, i3, i5] = *idr;
        let idr0 = LocalRegisterCopy::<u32, IDR0::Register>::new(i0);
        let idr1 = LocalRegisterCopy::<u32, IDR1::Register>::new(i1);
        let idr3 = LocalRegisterCopy::<u32, IDR3::Register>::new(i3);
        let idr5 = LocalRegisterCopy::<u32, IDR5::Register>::new(i5);
        Self {
            stage2: idr0.is_set(IDR0::S2P),
            stage1: idr0.is_set(IDR0::S1P),
            aarch64_tables: idr0.read(IDR0::TTF) & 0b10 != 0,
            little_endian: idr0.read(IDR0::TTENDIAN) != 0b11,
            coherent: idr0.is_set(IDR0::COHACC),
            vmid16: idr0.is_set(IDR0::VMID16),
            two_level_streams: idr0.read(IDR0::ST_LEVEL) == 0b01,
            sid_bits: idr1.read(IDR1::SIDSIZE) as u8,
            cmdq_log2: idr1.read(IDR1::CMDQS) as u8,
            eventq_log2: idr1.read(IDR1::EVENTQS) as u8,
            preset: idr1.is_set(IDR1::QUEUES_PRESET) || idr1.is_set(IDR1::TABLES_PRESET),
            fwb: idr3.is_set(IDR3::FWB),
            oas: idr5.read(IDR5::OAS) as u8,
            gran4k: idr5.is_set(IDR5::GRAN4K),
        }
    }

    /// Output address bits (IDR5.OAS), `None` for a reserved encoding.
    pub fn oas_bits(&self) -> Option<u32> {
        match self.oas {
            0 => Some(32),
            1 => Some(36),
            2 => Some(40),
            3 => Some(42),
            4 => Some(44),
            5 => Some(48),
            6 => Some(52),
            _ => None,
        }
    }

    /// Why this SMMU cannot give devices a stage 2 of 4 KiB AArch64 tables,
    /// if it cannot.
    pub fn stage2_unusable(&self) -> Option<&'static str> {
        if !self.stage2 {
            Some("no stage 2 translation (IDR0.S2P = 0)")
        } else if !self.aarch64_tables {
            Some("no AArch64 table format (IDR0.TTF)")
        } else if !self.little_endian {
            Some("big-endian tables only (IDR0.TTENDIAN)")
        } else if !self.gran4k {
            Some("no 4 KiB granule (IDR5.GRAN4K)")
        } else if self.preset {
            Some("fixed table or queue bases (IDR1 presets) are not supported")
        } else if self.oas_bits().is_none() {
            Some("reserved output address size (IDR5.OAS)")
        } else {
            None
        }
    }
}

/// SMMU_CR0 with the given enables.
pub fn cr0(smmuen: bool, eventq: bool, cmdq: bool) -> u32 {
    let mut v = LocalRegisterCopy::<u32, CR0::Register>::new(0);
    if smmuen {
        v.modify(CR0::SMMUEN::SET);
    }
    if eventq {
        v.modify(CR0::EVENTQEN::SET);
    }
    if cmdq {
        v.modify(CR0::CMDQEN::SET);
    }
    v.get()
}

/// SMMU_CR1: tables and queues Inner/Outer Write-Back, Inner Shareable
/// (the same attributes the CPU's own map gives that memory).
pub fn cr1_cacheable() -> u32 {
    let mut v = LocalRegisterCopy::<u32, CR1::Register>::new(0);
    v.modify(
        CR1::QUEUE_IC.val(1)
            + CR1::QUEUE_OC.val(1)
            + CR1::QUEUE_SH.val(3)
            + CR1::TABLE_IC.val(1)
            + CR1::TABLE_OC.val(1)
            + CR1::TABLE_SH.val(3),
    );
    v.get()
}

/// SMMU_GBPA asking for incoming transactions to abort while SMMUEN = 0.
pub fn gbpa_abort() -> u32 {
    let mut v = LocalRegisterCopy::<u32, GBPA::Register>::new(0);
    v.modify(GBPA::ABORT::SET + GBPA::UPDATE::SET);
    v.get()
}

/// Whether GBPA.UPDATE is still set.
pub fn gbpa_updating(gbpa: u32) -> bool {
    LocalRegisterCopy::<u32, GBPA::Register>::new(gbpa).is_set(GBPA::UPDATE)
}

/// SMMU_STRTAB_BASE_CFG for a linear table of `2^log2size` entries, or a
/// two-level one with `split` bits per level-2 table.
pub fn strtab_base_cfg(log2size: u8, two_level_split: Option<u8>) -> u32 {
    let mut v = LocalRegisterCopy::<u32, STRTAB_BASE_CFG::Register>::new(0);
    v.modify(STRTAB_BASE_CFG::LOG2SIZE.val(u32::from(log2size)));
    if let Some(split) = two_level_split {
        v.modify(STRTAB_BASE_CFG::FMT.val(1) + STRTAB_BASE_CFG::SPLIT.val(u32::from(split)));
    }
    v.get()
}

/// SMMU_GERROR bits (6.3.17), with names for the log.
pub const GERROR_BITS: [(u32, &str); 8] = [
    (1 << 0, "CMDQ_ERR"),
    (1 << 2, "EVTQ_ABT_ERR"),
    (1 << 3, "PRIQ_ABT_ERR"),
    (1 << 4, "MSI_CMDQ_ABT_ERR"),
    (1 << 5, "MSI_EVTQ_ABT_ERR"),
    (1 << 6, "MSI_PRIQ_ABT_ERR"),
    (1 << 7, "MSI_GERROR_ABT_ERR"),
    (1 << 8, "SFM_ERR"),
];

/// GERROR.CMDQ_ERR.
pub const GERROR_CMDQ_ERR: u32 = 1 << 0;

/// GERROR.SFM_ERR: the SMMU entered service failure mode.
pub const GERROR_SFM_ERR: u32 = 1 << 8;
