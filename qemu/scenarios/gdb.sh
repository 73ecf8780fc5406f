# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="gdb-multiarch in batch mode on the scripts/run machine (two CPUs): guest entry and stepi, a guest function and a source step, the hv-* helpers and breakpoints, a passed-through BAR's stage-2 MemAttr, a secondary vCPU started from gdb, the guest's normal end, helpers once QEMU is gone"
TIMEOUT=120
COMMAND=("$HV_ROOT/scripts/debug" --no-build --timeout 110 --smp 2
    --batch "$HV_ROOT/qemu/gdb/session.gdb")
EXPECT_EXIT=0
EXPECT=(
    'Breakpoint 1 at 0x402[0-9a-f]+: file hypervisor/src/main.rs'
    'add symbol table from file ".*/guest-payload" with all sections offset by 0x40000000'
    '^no vCPU has run yet'
    '^no guest stage 2 is loaded yet'
    'GDB-CHECK guest entry reached'
    'pc +0x40000000 '
    'GDB-CHECK stepped'
    'IPA 0x40000000 -> PA 0x[0-9a-f]+'
    'MemAttr=0b0110 \(Normal Write-Back, forced \(FWB\)\) S2AP=read/write SH=inner shareable AF=1 XN=executable'
    'invalid: the IPA is not mapped'
    'Breakpoint [0-9]+, guest_payload::arch::wc::run \(.*\) at guest-payload/src/arch/wc.rs:[0-9]+'
    'GDB-CHECK guest step'
    'Breakpoint [0-9]+ at 0x402[0-9a-f]+: file hypervisor/src/vm/machine.rs'
    'GDB-CHECK exit handler reached'
    '^vCPU 0: context at 0x[0-9a-f]+ \(gdb thread 1, pc 0x402[0-9a-f]+ in the hypervisor \(EL2\)\)'
    'saved at its last exit \(through vector 8\)'
    'last exit: ESR_EL2=0x[0-9a-f]+ \(EC 0x(16|24)\)'
    '^no vCPU 1 \(yet\): the vCPUs so far are 0'
    '^vCPU 0 exit counters at 0x[0-9a-f]+'
    '^  total +[1-9][0-9]*$'
    '^thread 1 \(CPU#0\): EL2 pc=0x402[0-9a-f]+: vCPU 0 \(context 0x[0-9a-f]+\)'
    'Breakpoint [0-9]+ at 0x402[0-9a-f]+: file hypervisor/src/devices/mmio.rs'
    '#0  hypervisor::devices::mmio::MmioBus::dispatch '
    'Breakpoint [0-9]+ at 0x402[0-9a-f]+: file hypervisor/src/vm/inject.rs'
    'GDB-CHECK BAR mapped'
    'IPA 0x8000000000 -> PA 0x8000000000'
    'MemAttr=0b0101 \(Normal Non-cacheable \(or stage 1.s Device type\)\) S2AP=read/write .* XN=execute-never'
    '^  \[0x40000000, 0x50000000\) 256 MiB -> PA 0x[0-9a-f]+: 128 x 2 MiB block, MemAttr=0b0110 '
    '^  \[0x8000000000, 0x8004000000\) 64 MiB -> PA 0x8000000000: .*MemAttr=0b0101 .*XN=execute-never'
    'GDB-CHECK CPU_ON returned'
    '^CPU_ON -> 0$'
    'GDB-CHECK secondary vCPU'
    '^thread 2 \(CPU#1\): EL2 pc=0x402[0-9a-f]+: vCPU 1 \(context 0x[0-9a-f]+\)'
    '^vCPU 1: context at 0x[0-9a-f]+ \(gdb thread 2, pc 0x402[0-9a-f]+ in the hypervisor \(EL2\)\)'
    '^  pc=0x40000004 pstate=0x3c5 \(EL1h\)'
    '^vCPU 1 exit counters at 0x[0-9a-f]+'
    '^  hvc +[1-9][0-9]* +[1-9][0-9]* +[1-9][0-9]*$'
    '\[Inferior 1 \(process 1\) exited normally\]'
    'GDB-CHECK after the end'
    '^the machine is not running \(QEMU has ended'
    '\[guest\] WC-SUMMARY ok'
    '^---- QEMU exited with status 0 ----'
)
REJECT=("panicked at" "Traceback" "Internal error" "Python Exception")

# The single step must have moved the guest's pc off its entry point, the
# source step must have left the breakpoint's line, and after the end every
# helper must say that the machine is gone.
check() {
    local pc before after gone
    pc=$(grep -A1 'GDB-CHECK stepped' "$1" | grep -Eo 'pc +0x[0-9a-f]+' | awk '{print $2}')
    if [[ -z $pc || $pc == 0x40000000 ]]; then
        echo "stepi did not move the guest pc (saw '${pc:-nothing}')"
        return 1
    fi
    before=$(grep -A1 'GDB-CHECK guest function reached' "$1" | grep -Eo '^Line [0-9]+ of "[^"]+"')
    after=$(grep -A1 'GDB-CHECK guest step' "$1" | grep -Eo '^Line [0-9]+ of "guest-payload/src/[^"]+"')
    if [[ -z $before || -z $after || $before == "$after" ]]; then
        echo "step did not reach another guest source line (before: '${before:-nothing}', after: '${after:-nothing}')"
        return 1
    fi
    gone=$(sed -n '/GDB-CHECK after the end/,$p' "$1" | grep -c '^the machine is not running')
    if ((gone != 3)); then
        echo "expected 3 not-running messages after the end, saw $gone"
        return 1
    fi
}
