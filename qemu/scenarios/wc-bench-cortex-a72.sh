# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="write-combine benchmark on cortex-a72 (no FWB, no DIC): the same policies through the non-FWB encodings"
TIMEOUT=120
CPU=cortex-a72
INITRD=$GUEST_BIN
SMP=$WC_SMP
# A smaller guest: without FWB all of guest RAM is cleaned to PoC, which is slow under TCG.
APPEND="$DEMO_PASSTHROUGH guest.mem=64M -- $WC_GUEST_ARGS"
EXTRA_ARGS=("${IVSHMEM_RAM[@]}" "${IVSHMEM_DEVICE[@]}" "${BOCHS_DEVICE[@]}")
EXPECT_EXIT=0
EXPECT=(
    'cpu: Cortex-A72 .*FWB no, DIC no'
    'guest RAM MemAttr 0b1111 \(no FWB: guest RAM cleaned to PoC\)'
    'WC unaligned probe: judged \(Device must fault, Normal must not\)'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=guest-choice s1=normal-nc effective=normal-nc .* unaligned=ok .* verify=ok'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=guest-choice s1=normal-wb effective=normal-nc .* unaligned=ok .* verify=ok'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=guest-choice s1=device-ngnre effective=device-ngnre .* unaligned=fault'
    'WC-SUMMARY ok'
)
REJECT=('panicked at' 'verify=FAIL' 'WC-SUMMARY FAIL')
