# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034,SC2054

DESCRIPTION="ivshmem, bochs-display and a pci-testdev behind a pcie-root-port: only the chosen two reach the guest, with the expected policies"
TIMEOUT=90
INITRD=$GUEST_BIN
SMP=$WC_SMP
APPEND="$DEMO_PASSTHROUGH guest.bootargs=test=wc -- $WC_GUEST_ARGS"
EXTRA_ARGS=("${IVSHMEM_RAM[@]}" "${IVSHMEM_DEVICE[@]}" "${BOCHS_DEVICE[@]}"
    -device pcie-root-port,id=rp0,addr=4 -device pci-testdev,bus=rp0)
EXPECT_EXIT=0
EXPECT=(
    'pci: 00:02\.0 1af4:1110 class 050000 -> passthrough'
    'pci:   BAR0 32-bit 0x[0-9a-f]+ size 256 B policy device'
    'pci:   BAR2 64-bit prefetchable 0x[0-9a-f]+ size 64 MiB policy guest-choice'
    'pci: 00:03\.0 1234:1111 class 038000 -> passthrough'
    'pci:   BAR0 32-bit prefetchable 0x[0-9a-f]+ size 16 MiB policy guest-choice'
    'pci:   BAR2 32-bit 0x[0-9a-f]+ size 4 KiB policy device'
    'pci: 00:04\.0 1b36:000c .*-> (host only|refused)'
    'pci: 01:00\.0 1b36:0005 .*-> host only'
    'WC unaligned probe: judged \(Device must fault, Normal must not\)'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=guest-choice'
    'WC-RESULT bdf=00:01\.0 bar=0 policy=guest-choice'
    'WC-SUMMARY ok'
)

# The guest sees exactly the two chosen devices, renumbered on its bus 0.
check() {
    local seen
    seen=$(grep -Eo 'WC pci [0-9a-f]{2}:[0-9a-f]{2}\.[0-7] [0-9a-f]{4}:[0-9a-f]{4}' "$1" | awk '{print $3, $4}' | sort -u | tr '\n' ';')
    if [[ $seen != "00:00.0 1af4:1110;00:01.0 1234:1111;" ]]; then
        echo "the guest saw '$seen', expected exactly ivshmem at 00:00.0 and bochs at 00:01.0"
        return 1
    fi
}
