# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="write-combine benchmark with both devices forced to policy device: every type comes out Device-nGnRE or stronger"
TIMEOUT=90
INITRD=$GUEST_BIN
SMP=$WC_SMP
APPEND="$DEMO_PASSTHROUGH pci.attr=00:02.0:device,00:03.0:device -- $WC_GUEST_ARGS"
EXTRA_ARGS=("${IVSHMEM_RAM[@]}" "${IVSHMEM_DEVICE[@]}" "${BOCHS_DEVICE[@]}")
EXPECT_EXIT=0
EXPECT=(
    'pci:   BAR2 64-bit prefetchable 0x[0-9a-f]+ size 64 MiB policy device'
    'WC unaligned probe: judged \(Device must fault, Normal must not\)'
    # Normal at stage 1 comes out Device: the unaligned load must fault.
    'WC-RESULT bdf=00:00\.0 bar=2 policy=device s1=normal-nc effective=device-ngnre .* unaligned=fault'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=device s1=normal-wb effective=device-ngnre .* unaligned=fault'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=device s1=device-gre effective=device-ngnre'
    # QEMU's TCG reports nGnRE here with FWB; the Arm ARM says nGnRnE (see ATTR-CHECK).
    'WC-RESULT bdf=00:00\.0 bar=2 policy=device s1=device-ngnrne effective=device-ngnr?n?e '
    'WC-SUMMARY ok'
)
REJECT=('panicked at' 'verify=FAIL' 'WC-SUMMARY FAIL' 'policy=device s1=[a-z-]+ effective=normal'
    'policy=device .* unaligned=ok')
