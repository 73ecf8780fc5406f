# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="gdb-multiarch in batch mode: guest entry, single step, hv-stage2, exit handler, hv-vcpu, hv-exits, a passed-through BAR's stage-2 MemAttr"
TIMEOUT=90
COMMAND=("$HV_ROOT/scripts/debug" --no-build --timeout 80
    --append "pci.passthrough=1af4:1110 guest.bootargs=test=wc"
    --qemu-arg -object --qemu-arg "${IVSHMEM_RAM[1]}"
    --qemu-arg -device --qemu-arg "${IVSHMEM_DEVICE[1]}"
    --batch "$HV_ROOT/qemu/gdb/exit-and-stage2.gdb")
EXPECT_EXIT=0
EXPECT=(
    'Breakpoint 1 at 0x402[0-9a-f]+: file hypervisor/src/main.rs'
    'GDB-CHECK guest entry reached'
    'pc +0x40000000 '
    'GDB-CHECK stepped'
    'IPA 0x40000000 -> PA 0x[0-9a-f]+'
    'MemAttr=0b0110 \(Normal Write-Back, forced \(FWB\)\) S2AP=read/write SH=inner shareable AF=1 XN=executable'
    'invalid: the IPA is not mapped'
    'GDB-CHECK exit handler reached'
    'vcpu context at 0x[0-9a-f]+ \(last exit through vector 8\)'
    'last exit: ESR_EL2=0x[0-9a-f]+ \(EC 0x(16|24)\)'
    'exit counters at 0x[0-9a-f]+:'
    'total +[1-9]'
    'GDB-CHECK BAR mapped'
    'IPA 0x8000000000 -> PA 0x8000000000'
    'MemAttr=0b0101 \(Normal Non-cacheable \(or stage 1.s Device type\)\) S2AP=read/write .* XN=execute-never'
)

# The single step must have moved the guest's pc off its entry point.
check() {
    local pc
    pc=$(grep -A1 'GDB-CHECK stepped' "$1" | grep -Eo 'pc +0x[0-9a-f]+' | awk '{print $2}')
    if [[ -z $pc || $pc == 0x40000000 ]]; then
        echo "stepi did not move the guest pc (saw '${pc:-nothing}')"
        return 1
    fi
}
