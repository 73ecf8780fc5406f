# gdb commands for the hypervisor, sourced by scripts/debug.
#
#   hv-stage2 <ipa>   walk the running guest's stage-2 tables (VTTBR_EL2,
#                     VTCR_EL2) for an IPA and decode the final descriptor:
#                     MemAttr by name (with or without HCR_EL2.FWB), S2AP,
#                     SH, AF, XN, block size and output address
#   hv-vcpu           the guest's registers saved at its last exit
#                     (the VcpuContext TPIDR_EL2 points at)
#   hv-exits          the running VM's exit counters
#
# Memory is read in QEMU's physical-memory mode, so the commands work
# whether the CPU stopped in the hypervisor or in the guest.

python
import gdb


def _reg(name):
    return int(gdb.parse_and_eval("$" + name)) & 0xFFFFFFFFFFFFFFFF


def _read_phys_u64(addr):
    gdb.execute("maint packet Qqemu.PhyMemMode:1", to_string=True)
    try:
        data = gdb.selected_inferior().read_memory(addr, 8).tobytes()
    finally:
        gdb.execute("maint packet Qqemu.PhyMemMode:0", to_string=True)
    return int.from_bytes(data, "little")


_MEMATTR_NOFWB = {
    0b0000: "Device-nGnRnE",
    0b0001: "Device-nGnRE",
    0b0010: "Device-nGRE",
    0b0011: "Device-GRE",
    0b0101: "Normal Non-cacheable",
    0b1010: "Normal Write-Through",
    0b1111: "Normal Write-Back",
}
_MEMATTR_FWB = {
    0b0000: "Device-nGnRnE",
    0b0001: "Device-nGnRE",
    0b0010: "Device-nGRE",
    0b0011: "Device-GRE",
    0b0101: "Normal Non-cacheable (or stage 1's Device type)",
    0b0110: "Normal Write-Back, forced (FWB)",
    0b0111: "stage 1 decides (FWB)",
}
_S2AP = {0: "none", 1: "read-only", 2: "write-only", 3: "read/write"}
_SH = {0: "non-shareable", 1: "reserved", 2: "outer shareable", 3: "inner shareable"}


def memattr_name(memattr, fwb):
    table = _MEMATTR_FWB if fwb else _MEMATTR_NOFWB
    return table.get(memattr, "reserved/other")


class HvStage2(gdb.Command):
    """hv-stage2 IPA: walk the guest's stage 2 for IPA and decode the descriptor."""

    def __init__(self):
        super().__init__("hv-stage2", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        if not arg.strip():
            raise gdb.GdbError("usage: hv-stage2 <ipa>")
        ipa = int(gdb.parse_and_eval(arg)) & 0xFFFFFFFFFFFFFFFF
        vttbr = _reg("VTTBR_EL2")
        vtcr = _reg("VTCR_EL2")
        hcr = _reg("HCR_EL2")
        fwb = bool(hcr & (1 << 46))
        if vttbr == 0:
            raise gdb.GdbError("VTTBR_EL2 is 0: no guest stage 2 is loaded yet")
        t0sz = vtcr & 0x3F
        sl0 = (vtcr >> 6) & 3
        ia_bits = 64 - t0sz
        level = {0: 2, 1: 1, 2: 0}.get(sl0)
        if level is None:
            raise gdb.GdbError("VTCR_EL2.SL0=%d is not a 4 KiB-granule start level" % sl0)
        if ipa >> ia_bits:
            print("IPA %#x is beyond the %d-bit IPA space" % (ipa, ia_bits))
            return
        table = vttbr & 0x0000FFFFFFFFFFFE
        vmid = (vttbr >> 48) & 0xFFFF
        print("stage 2: VTTBR_EL2=%#x (VMID %d) VTCR_EL2=%#x: %d-bit IPA, start level %d, FWB %s"
              % (vttbr, vmid, vtcr, ia_bits, level, "on" if fwb else "off"))
        first = True
        while level <= 3:
            shift = 12 + 9 * (3 - level)
            bits = (ia_bits - shift) if first else 9
            index = (ipa >> shift) & ((1 << min(bits, 24)) - 1)
            addr = table + 8 * index
            desc = _read_phys_u64(addr)
            kind = desc & 3
            print("  level %d: table %#x index %d: descriptor %#018x" % (level, table, index, desc))
            if kind & 1 == 0:
                print("  -> invalid: the IPA is not mapped (a guest access traps to EL2)")
                return
            if kind == 3 and level < 3:
                table = desc & 0x0000FFFFFFFFF000
                level += 1
                first = False
                continue
            if kind == 1 and level == 3:
                print("  -> reserved descriptor type at level 3")
                return
            size = 1 << shift
            oa = desc & 0x0000FFFFFFFFF000 & ~(size - 1)
            memattr = (desc >> 2) & 0xF
            s2ap = (desc >> 6) & 3
            sh = (desc >> 8) & 3
            af = (desc >> 10) & 1
            xn = (desc >> 53) & 3
            names = {4096: "4 KiB page", 2 << 20: "2 MiB block", 1 << 30: "1 GiB block"}
            print("  -> %s: IPA %#x -> PA %#x" % (names.get(size, "%d-byte block" % size),
                                                 ipa, oa + (ipa & (size - 1))))
            print("     MemAttr=0b%s (%s) S2AP=%s SH=%s AF=%d XN=%s"
                  % (format(memattr, "04b"), memattr_name(memattr, fwb), _S2AP[s2ap], _SH[sh], af,
                     "execute-never" if xn & 2 else "executable"))
            return


class HvVcpu(gdb.Command):
    """hv-vcpu: the guest's registers saved at its last exit."""

    def __init__(self):
        super().__init__("hv-vcpu", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        ctx = _reg("TPIDR_EL2")
        if ctx == 0:
            raise gdb.GdbError("TPIDR_EL2 is 0: no vcpu has run yet")
        x = [_read_phys_u64(ctx + 8 * i) for i in range(31)]
        sp_el0, pc, pstate, esr, far, hpfar, vector = [
            _read_phys_u64(ctx + off) for off in (248, 256, 264, 272, 280, 288, 296)]
        print("vcpu context at %#x (last exit through vector %d)" % (ctx, vector))
        for row in range(0, 31, 4):
            print("  " + "  ".join("x%-2d=%#018x" % (i, x[i]) for i in range(row, min(row + 4, 31))))
        mode = {0b0000: "EL0t", 0b0100: "EL1t", 0b0101: "EL1h"}.get(pstate & 0x1F, "%#x" % (pstate & 0x1F))
        print("  pc=%#x pstate=%#x (%s) sp_el0=%#x" % (pc, pstate, mode, sp_el0))
        print("  last exit: ESR_EL2=%#x (EC %#x) FAR_EL2=%#x HPFAR_EL2=%#x (IPA page %#x)"
              % (esr, (esr >> 26) & 0x3F, far, hpfar, ((hpfar >> 4) & ((1 << 44) - 1)) << 12))


class HvExits(gdb.Command):
    """hv-exits: the running VM's exit counters."""

    def __init__(self):
        super().__init__("hv-exits", gdb.COMMAND_USER)

    def invoke(self, arg, from_tty):
        sym = gdb.lookup_global_symbol("HV_EXIT_COUNTERS") or gdb.lookup_static_symbol("HV_EXIT_COUNTERS")
        if sym is not None:
            addr = int(sym.value().address)
        else:
            # Only the minimal (ELF) symbol is known: ask gdb for its address.
            out = gdb.execute("info address HV_EXIT_COUNTERS", to_string=True)
            addr = int(out.split(" at address ")[1].split()[0].rstrip("."), 16)
        counters = _read_phys_u64(addr)
        if counters == 0:
            raise gdb.GdbError("no VM is running yet")
        names = ["total", "hvc", "smc", "data aborts", "mmio emulated", "aborts injected",
                 "sysreg traps", "wfi/wfe"]
        print("exit counters at %#x:" % counters)
        for i, name in enumerate(names):
            print("  %-16s %d" % (name, _read_phys_u64(counters + 8 * i)))


HvStage2()
HvVcpu()
HvExits()
end
