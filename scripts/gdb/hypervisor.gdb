# gdb commands for the hypervisor, sourced by scripts/debug (by hand:
# `source scripts/gdb/hypervisor.gdb`). `help user-defined` lists them:
#
#   hv-stage2 IPA          walk the guest's stage 2 for one IPA and decode the
#                          final descriptor (MemAttr by name per HCR_EL2.FWB,
#                          S2AP, SH, AF, XN, block size, output address)
#   hv-stage2 START END    what is mapped in [START, END): runs of equal
#                          attributes with their output addresses
#   hv-vcpu [N]            vCPU N's registers saved at its last exit (all vCPUs
#                          without N), and where its physical CPU is now
#   hv-exits [N]           exit counters, per vCPU and in total
#   hv-threads             QEMU's gdbstub threads (physical CPUs) and the vCPU
#                          each one runs
#   hv-break-exit, hv-break-mmio, hv-break-bar, hv-break-inject
#                          breakpoints on the never-inlined functions of the
#                          exit path (scripts/gdb/README.md)
#
# Memory is read in QEMU's physical-memory mode (the hypervisor's EL2 map
# is an identity map), so the commands work whether a CPU stopped in the
# hypervisor or in the guest. When QEMU has ended or gdb is not attached,
# they say so instead of failing.
#
# vCPUs: with static partitioning, vCPU i runs on the physical CPU that is
# gdbstub thread i+1 (the order of the DT's /cpus). The hypervisor exports
# HV_VCPU_CONTEXTS and HV_VCPU_EXIT_COUNTERS ([usize; 16], 0 for a vCPU
# that does not exist); a hypervisor without them has one vCPU, found
# through TPIDR_EL2 and HV_EXIT_COUNTERS.

python
import functools

import gdb

NOT_RUNNING = ("the machine is not running (QEMU has ended, or gdb is not attached to it): "
               "nothing to read; start it again with scripts/debug")
MAX_VCPUS = 16

# Offsets in VcpuContext (hypervisor/src/arch/aarch64/context.rs, mod offsets).
CTX_X0, CTX_SP_EL0, CTX_PC, CTX_ESR, CTX_HPFAR = 0, 248, 256, 272, 288

# ExitCounter order (hypervisor/src/vm/hypercall.rs).
EXIT_COUNTER_NAMES = ["total", "hvc", "smc", "data aborts", "mmio emulated",
                      "aborts injected", "sysreg traps", "wfi/wfe"]


class Unavailable(Exception):
    """The machine cannot show this yet (or any more): said, not an error."""


class NotRunning(Unavailable):
    def __init__(self):
        super().__init__(NOT_RUNNING)


def _machine_running():
    inferior = gdb.selected_inferior()
    return inferior.pid != 0 and gdb.selected_thread() is not None


def _guarded(invoke):
    """Runs a command body; a machine that is gone gets one plain sentence."""

    @functools.wraps(invoke)
    def wrapper(self, arg, from_tty):
        if not _machine_running():
            print(NOT_RUNNING)
            return
        try:
            invoke(self, arg, from_tty)
        except Unavailable as e:
            print(e)
        except gdb.error as e:
            text = str(e)
            if not _machine_running() or any(s in text for s in (
                    "No registers", "not being run", "Remote connection closed",
                    "Remote communication error", "The program has no registers")):
                print(NOT_RUNNING)
                return
            raise gdb.GdbError("%s: %s" % (self._name, text))

    return wrapper


def _reg(name):
    return int(gdb.parse_and_eval("$" + name)) & 0xFFFFFFFFFFFFFFFF


def _read_phys(addr, length):
    """length bytes of physical memory at addr."""
    gdb.execute("maint packet Qqemu.PhyMemMode:1", to_string=True)
    try:
        return gdb.selected_inferior().read_memory(addr, length).tobytes()
    finally:
        gdb.execute("maint packet Qqemu.PhyMemMode:0", to_string=True)


def _read_phys_u64s(addr, count):
    data = _read_phys(addr, 8 * count)
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, 8 * count, 8)]


def _read_phys_u64(addr):
    return _read_phys_u64s(addr, 1)[0]


def _symbol_address(name):
    """Run-time address of a data symbol, or None when the ELF has none."""
    # C syntax works for the minimal (ELF) symbol of a #[no_mangle] static
    # too, whatever language the selected frame is in.
    language = gdb.parameter("language")
    gdb.execute("set language c", to_string=True)
    try:
        return int(gdb.parse_and_eval("(unsigned long)&'%s'" % name))
    except gdb.error:
        return None
    finally:
        gdb.execute("set language %s" % language, to_string=True)


def _threads():
    """[(vcpu index, thread)] in gdbstub order: thread i+1 runs vCPU i."""
    threads = sorted(gdb.selected_inferior().threads(), key=lambda t: t.ptid[1])
    return [(t.ptid[1] - 1, t) for t in threads]


def _on_thread(thread, fn):
    """fn() with thread selected; the selection is restored afterwards."""
    orig = gdb.selected_thread()
    try:
        frame = gdb.selected_frame()
    except gdb.error:
        frame = None
    if orig is not None and thread.ptid == orig.ptid:
        return fn()
    thread.switch()
    try:
        return fn()
    finally:
        if orig is not None and orig.is_valid():
            orig.switch()
            if frame is not None and frame.is_valid():
                frame.select()


def _cpu_state(thread):
    """(exception level, pc) of a physical CPU."""
    return _on_thread(thread, lambda: ((_reg("cpsr") >> 2) & 3, _reg("pc")))


def _per_vcpu_table(table_symbol, fallback):
    """{vcpu: address} from a [usize; 16] table, or fallback() without one."""
    addr = _symbol_address(table_symbol)
    if addr is None:
        return fallback()
    return {i: a for i, a in enumerate(_read_phys_u64s(addr, MAX_VCPUS)) if a}


def _vcpu_contexts():
    def single():
        # One vCPU, on the boot CPU: its context is what TPIDR_EL2 points at.
        threads = _threads()
        if not threads:
            raise NotRunning()
        ctx = _on_thread(threads[0][1], lambda: _reg("TPIDR_EL2"))
        return {0: ctx} if ctx else {}
    return _per_vcpu_table("HV_VCPU_CONTEXTS", single)


def _exit_counters():
    def single():
        addr = _symbol_address("HV_EXIT_COUNTERS")
        if addr is None:
            raise gdb.GdbError("the hypervisor's symbols are not loaded (no HV_EXIT_COUNTERS)")
        counters = _read_phys_u64(addr)
        return {0: counters} if counters else {}
    return _per_vcpu_table("HV_VCPU_EXIT_COUNTERS", single)


def _vcpu_arg(arg, command):
    arg = arg.strip()
    if not arg:
        return None
    try:
        n = int(gdb.parse_and_eval(arg))
    except gdb.error:
        raise gdb.GdbError("usage: %s [N] (N: a vCPU number)" % command)
    if not 0 <= n < MAX_VCPUS:
        raise gdb.GdbError("%s: vCPU numbers go from 0 to %d" % (command, MAX_VCPUS - 1))
    return n


# --- stage 2 -------------------------------------------------------------

_MEMATTR_FWB = {
    0b0000: "Device-nGnRnE",
    0b0001: "Device-nGnRE",
    0b0010: "Device-nGRE",
    0b0011: "Device-GRE",
    0b0101: "Normal Non-cacheable (or stage 1's Device type)",
    0b0110: "Normal Write-Back, forced (FWB)",
    0b0111: "stage 1 decides (FWB)",
}
_DEVICE = {0b00: "Device-nGnRnE", 0b01: "Device-nGnRE", 0b10: "Device-nGRE", 0b11: "Device-GRE"}
_CACHE = {0b01: "Non-cacheable", 0b10: "Write-Through", 0b11: "Write-Back"}
_S2AP = {0: "none", 1: "read-only", 2: "write-only", 3: "read/write"}
_SH = {0: "non-shareable", 1: "reserved", 2: "outer shareable", 3: "inner shareable"}
_BLOCK_NAMES = {4096: "4 KiB page", 2 << 20: "2 MiB block", 1 << 30: "1 GiB block",
                1 << 39: "512 GiB block"}


def memattr_name(memattr, fwb):
    """Stage-2 MemAttr[3:0] by name (Arm ARM, "Stage 2 memory type and
    Cacheability attributes", with and without FEAT_S2FWB)."""
    if fwb:
        return _MEMATTR_FWB.get(memattr, "reserved")
    outer, inner = memattr >> 2, memattr & 3
    if outer == 0:
        return _DEVICE[inner]
    if inner == 0:
        return "reserved"
    if outer == inner:
        return "Normal " + _CACHE[outer]
    return "Normal outer %s, inner %s" % (_CACHE[outer], _CACHE[inner])


def _size_name(size):
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if size >= unit and size % unit == 0:
            return "%d %s" % (size // unit, name)
    return "%d B" % size


class Stage2:
    """The loaded stage 2 (VTTBR_EL2, VTCR_EL2, HCR_EL2.FWB) of a CPU that
    runs a vCPU."""

    def __init__(self):
        regs = None
        candidates = [gdb.selected_thread()] + [t for _, t in _threads()]
        for thread in candidates:
            vals = _on_thread(thread, lambda: (_reg("VTTBR_EL2"), _reg("VTCR_EL2"), _reg("HCR_EL2")))
            if vals[0] != 0:
                regs = vals
                break
        if regs is None:
            raise Unavailable("no guest stage 2 is loaded yet (VTTBR_EL2 is 0 on every CPU)")
        self.vttbr, self.vtcr, hcr = regs
        self.fwb = bool(hcr & (1 << 46))
        self.ia_bits = 64 - (self.vtcr & 0x3F)
        sl0 = (self.vtcr >> 6) & 3
        self.start_level = {0: 2, 1: 1, 2: 0}.get(sl0)
        if self.start_level is None:
            raise gdb.GdbError("VTCR_EL2.SL0=%d is not a 4 KiB-granule start level" % sl0)
        self.root = self.vttbr & 0x0000FFFFFFFFFFFE
        self.vmid = (self.vttbr >> 48) & 0xFFFF

    def header(self):
        return ("stage 2: VTTBR_EL2=%#x (VMID %d) VTCR_EL2=%#x: %d-bit IPA, start level %d, FWB %s"
                % (self.vttbr, self.vmid, self.vtcr, self.ia_bits, self.start_level,
                   "on" if self.fwb else "off"))

    @staticmethod
    def shift(level):
        return 12 + 9 * (3 - level)

    def entries(self, level):
        """Entries in a table at level (the start level may concatenate tables)."""
        if level == self.start_level:
            return 1 << (self.ia_bits - self.shift(level))
        return 512

    def attrs(self, desc):
        return ((desc >> 2) & 0xF, (desc >> 6) & 3, (desc >> 8) & 3, (desc >> 10) & 1,
                (desc >> 53) & 3)

    def describe(self, desc):
        memattr, s2ap, sh, af, xn = self.attrs(desc)
        return ("MemAttr=0b%s (%s) S2AP=%s SH=%s AF=%d XN=%s"
                % (format(memattr, "04b"), memattr_name(memattr, self.fwb), _S2AP[s2ap], _SH[sh],
                   af, "execute-never" if xn & 2 else "executable"))

    @staticmethod
    def output_address(desc, size):
        return desc & 0x0000FFFFFFFFF000 & ~(size - 1)

    def leaves(self, start, end):
        """Yields (ipa, size, descriptor) for every mapping that meets
        [start, end), in IPA order."""
        return self._leaves(self.root, self.start_level, 0, start, end)

    def _leaves(self, table, level, base, start, end):
        shift = self.shift(level)
        first = max(0, (start - base) >> shift)
        last = min(self.entries(level), ((end - 1 - base) >> shift) + 1)
        if first >= last:
            return
        for i, desc in enumerate(_read_phys_u64s(table + 8 * first, last - first), first):
            ipa = base + (i << shift)
            if desc & 1 == 0:
                continue
            if desc & 3 == 3 and level < 3:
                yield from self._leaves(desc & 0x0000FFFFFFFFF000, level + 1, ipa, start, end)
            elif desc & 3 == 3 or level < 3:
                # A page at level 3 or a block above it (0b01 at level 3 is
                # reserved and maps nothing).
                yield ipa, 1 << shift, desc


def _walk_one(s2, ipa):
    print(s2.header())
    level, table = s2.start_level, s2.root
    while level <= 3:
        shift = s2.shift(level)
        index = (ipa >> shift) & (s2.entries(level) - 1)
        addr = table + 8 * index
        desc = _read_phys_u64(addr)
        print("  level %d: table %#x index %d: descriptor %#018x" % (level, table, index, desc))
        if desc & 1 == 0:
            print("  -> invalid: the IPA is not mapped (a guest access traps to EL2)")
            return
        if desc & 3 == 3 and level < 3:
            table = desc & 0x0000FFFFFFFFF000
            level += 1
            continue
        if desc & 3 == 1 and level == 3:
            print("  -> reserved descriptor type at level 3")
            return
        size = 1 << shift
        oa = s2.output_address(desc, size)
        print("  -> %s: IPA %#x -> PA %#x" % (_BLOCK_NAMES.get(size, "%d-byte block" % size),
                                             ipa, oa + (ipa & (size - 1))))
        print("     " + s2.describe(desc))
        return


def _summary(s2, start, end):
    print(s2.header())
    print("mapped in [%#x, %#x):" % (start, end))
    runs = []
    for ipa, size, desc in s2.leaves(start, end):
        oa = s2.output_address(desc, size)
        attrs = s2.attrs(desc)
        run = runs[-1] if runs else None
        if (run is not None and run["end"] == ipa and run["oa_end"] == oa
                and run["attrs"] == attrs and run["size"] == size):
            run["end"] += size
            run["oa_end"] += size
            run["count"] += 1
        else:
            runs.append({"start": ipa, "end": ipa + size, "oa": oa, "oa_end": oa + size,
                         "attrs": attrs, "size": size, "count": 1, "desc": desc})
    total = 0
    for run in runs:
        length = run["end"] - run["start"]
        total += length
        unit = _BLOCK_NAMES.get(run["size"], "%d-byte block" % run["size"])
        print("  [%#x, %#x) %s -> PA %#x: %d x %s, %s"
              % (run["start"], run["end"], _size_name(length), run["oa"], run["count"], unit,
                 s2.describe(run["desc"])))
    if not runs:
        print("  nothing: every access in this range traps to EL2")
    else:
        print("  %d run(s), %s mapped; everything else in the range traps to EL2"
              % (len(runs), _size_name(total)))


class HvStage2(gdb.Command):
    """hv-stage2 IPA | hv-stage2 START END: the guest's stage-2 mappings.

With one address: the walk of the loaded stage 2 (VTTBR_EL2, VTCR_EL2) for
that IPA, each level's descriptor, and the final one decoded: block size,
output address, MemAttr by name (with or without HCR_EL2.FWB), S2AP, SH, AF,
XN. With two: what is mapped in [START, END), as runs of equal attributes
and contiguous output addresses."""

    _name = "hv-stage2"

    def __init__(self):
        super().__init__(self._name, gdb.COMMAND_USER)

    @_guarded
    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if len(args) not in (1, 2):
            raise gdb.GdbError("usage: hv-stage2 <ipa> | hv-stage2 <start> <end>")
        values = [int(gdb.parse_and_eval(a)) & 0xFFFFFFFFFFFFFFFF for a in args]
        s2 = Stage2()
        limit = 1 << s2.ia_bits
        if len(values) == 1:
            if values[0] >= limit:
                print("IPA %#x is beyond the %d-bit IPA space" % (values[0], s2.ia_bits))
                return
            _walk_one(s2, values[0])
            return
        start, end = values
        if end <= start:
            raise gdb.GdbError("hv-stage2: the range [%#x, %#x) is empty" % (start, end))
        if start >= limit:
            print("IPA %#x is beyond the %d-bit IPA space" % (start, s2.ia_bits))
            return
        _summary(s2, start, min(end, limit))


# --- vCPUs ---------------------------------------------------------------

def _where(vcpu):
    """Where the physical CPU of vcpu is now, as a phrase."""
    threads = dict(_threads())
    thread = threads.get(vcpu)
    if thread is None:
        return "no gdbstub thread %d" % (vcpu + 1)
    el, pc = _cpu_state(thread)
    if el == 2:
        place = "in the hypervisor (EL2)"
    else:
        place = "in the guest (EL%d): the live registers are thread %d's" % (el, thread.num)
    return "gdb thread %d, pc %#x %s" % (thread.num, pc, place)


def _print_vcpu(vcpu, ctx):
    words = _read_phys_u64s(ctx, (CTX_HPFAR + 16) // 8)
    x = words[:31]
    sp_el0, pc, pstate, esr, far, hpfar, vector = words[CTX_SP_EL0 // 8:CTX_HPFAR // 8 + 2]
    print("vCPU %d: context at %#x (%s)" % (vcpu, ctx, _where(vcpu)))
    print("  saved at its last exit (through vector %d):" % vector)
    for row in range(0, 31, 4):
        print("  " + "  ".join("x%-2d=%#018x" % (i, x[i]) for i in range(row, min(row + 4, 31))))
    mode = {0b0000: "EL0t", 0b0100: "EL1t", 0b0101: "EL1h"}.get(pstate & 0x1F, "%#x" % (pstate & 0x1F))
    print("  pc=%#x pstate=%#x (%s) sp_el0=%#x" % (pc, pstate, mode, sp_el0))
    print("  last exit: ESR_EL2=%#x (EC %#x) FAR_EL2=%#x HPFAR_EL2=%#x (IPA page %#x)"
          % (esr, (esr >> 26) & 0x3F, far, hpfar, ((hpfar >> 4) & ((1 << 44) - 1)) << 12))


class HvVcpu(gdb.Command):
    """hv-vcpu [N]: vCPU N's registers as saved at its last exit (every vCPU without N).

Also says where vCPU N's physical CPU (gdbstub thread N+1) is now: in the
hypervisor, or back in the guest, where the live registers are that
thread's (`thread N+1`, `info registers`)."""

    _name = "hv-vcpu"

    def __init__(self):
        super().__init__(self._name, gdb.COMMAND_USER)

    @_guarded
    def invoke(self, arg, from_tty):
        want = _vcpu_arg(arg, self._name)
        contexts = _vcpu_contexts()
        if not contexts:
            print("no vCPU has run yet")
            return
        if want is not None:
            if want not in contexts:
                print("no vCPU %d (yet): the vCPUs so far are %s"
                      % (want, ", ".join(str(i) for i in sorted(contexts))))
                return
            contexts = {want: contexts[want]}
        for vcpu in sorted(contexts):
            _print_vcpu(vcpu, contexts[vcpu])


class HvExits(gdb.Command):
    """hv-exits [N]: the running VM's exit counters, per vCPU (vCPU N only with N) and in total."""

    _name = "hv-exits"

    def __init__(self):
        super().__init__(self._name, gdb.COMMAND_USER)

    @_guarded
    def invoke(self, arg, from_tty):
        want = _vcpu_arg(arg, self._name)
        tables = _exit_counters()
        if not tables:
            print("no VM is running yet")
            return
        if want is not None:
            if want not in tables:
                print("no vCPU %d (yet): the vCPUs so far are %s"
                      % (want, ", ".join(str(i) for i in sorted(tables))))
                return
            tables = {want: tables[want]}
        vcpus = sorted(tables)
        values = {v: _read_phys_u64s(tables[v], len(EXIT_COUNTER_NAMES)) for v in vcpus}
        for v in vcpus:
            print("vCPU %d exit counters at %#x" % (v, tables[v]))
        head = "  %-16s" % "exits" + "".join("%14s" % ("vCPU %d" % v) for v in vcpus)
        if len(vcpus) > 1:
            head += "%14s" % "all"
        print(head)
        for i, name in enumerate(EXIT_COUNTER_NAMES):
            line = "  %-16s" % name + "".join("%14d" % values[v][i] for v in vcpus)
            if len(vcpus) > 1:
                line += "%14d" % sum(values[v][i] for v in vcpus)
            print(line)


class HvThreads(gdb.Command):
    """hv-threads: QEMU's gdbstub threads (physical CPUs) and the vCPU each one runs."""

    _name = "hv-threads"

    def __init__(self):
        super().__init__(self._name, gdb.COMMAND_USER)

    @_guarded
    def invoke(self, arg, from_tty):
        contexts = _vcpu_contexts()
        for vcpu, thread in _threads():
            el, pc = _cpu_state(thread)
            if vcpu in contexts:
                runs = "vCPU %d (context %#x)" % (vcpu, contexts[vcpu])
            else:
                runs = "no vCPU"
            print("thread %d (CPU#%d): EL%d pc=%#x: %s" % (thread.num, vcpu, el, pc, runs))


HvStage2()
HvVcpu()
HvExits()
HvThreads()
end

# Breakpoints by name on functions that are never inlined, whatever the
# optimisation level (#[inline(never)] in the source).

define hv-break-exit
  break hypervisor::vm::machine::vcpu_exit
end
document hv-break-exit
hv-break-exit: break on every guest exit (hypervisor::vm::machine::vcpu_exit).
The exit's syndrome is in hv-vcpu's "last exit" line.
end

define hv-break-mmio
  break hypervisor::devices::mmio::MmioBus::dispatch
end
document hv-break-mmio
hv-break-mmio: break on every emulated MMIO access (hypervisor::devices::mmio::MmioBus::dispatch).
Its arguments are the fault IPA and the decoded access (size, write, value).
end

define hv-break-bar
  break hypervisor::vm::machine::apply_bar_event
end
document hv-break-bar
hv-break-bar: break when a BAR enters or leaves stage 2 (hypervisor::vm::machine::apply_bar_event).
`finish`, then hv-stage2 on the BAR's address shows the new mapping.
end

define hv-break-inject
  break hypervisor::vm::inject::inject
end
document hv-break-inject
hv-break-inject: break when an exception is injected into the guest (hypervisor::vm::inject::inject).
Aborts for unmapped IPAs, UNDEF for refused system registers.
end
