# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="write-combine benchmark with policy cacheable on -cpu max (FWB and DIC): Normal-WB stays write-back"
TIMEOUT=90
INITRD=$GUEST_BIN
SMP=$WC_SMP
APPEND="$DEMO_PASSTHROUGH pci.attr=00:02.0:cacheable,00:03.0:cacheable -- $WC_GUEST_ARGS"
EXTRA_ARGS=("${IVSHMEM_RAM[@]}" "${IVSHMEM_DEVICE[@]}" "${BOCHS_DEVICE[@]}")
EXPECT_EXIT=0
EXPECT=(
    'pci:   BAR2 64-bit prefetchable 0x[0-9a-f]+ size 64 MiB policy cacheable'
    'WC unaligned probe: judged \(Device must fault, Normal must not\)'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=cacheable s1=normal-wb effective=normal-wb .* unaligned=ok .* verify=ok'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=cacheable s1=normal-nc effective=normal-nc .* unaligned=ok .* verify=ok'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=cacheable s1=device-gre effective=device-gre .* unaligned=fault'
    'WC-SUMMARY ok'
)
REJECT=('panicked at' 'verify=FAIL' 'WC-SUMMARY FAIL')
