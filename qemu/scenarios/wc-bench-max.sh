# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="write-combine benchmark on -cpu max (FWB, DIC): guest-choice BARs give the guest Device-* or Normal-NC"
TIMEOUT=90
INITRD=$GUEST_BIN
SMP=$WC_SMP
APPEND="$DEMO_PASSTHROUGH -- $WC_GUEST_ARGS"
EXTRA_ARGS=("${IVSHMEM_RAM[@]}" "${IVSHMEM_DEVICE[@]}" "${BOCHS_DEVICE[@]}")
EXPECT_EXIT=0
EXPECT=(
    'cpu: .*FWB yes, DIC yes'
    'WC unaligned probe: judged \(Device must fault, Normal must not\)'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=guest-choice s1=device-gre effective=device-gre .* unaligned=fault .* verify=ok'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=guest-choice s1=normal-nc effective=normal-nc .* unaligned=ok .* verify=ok'
    'WC-RESULT bdf=00:00\.0 bar=2 policy=guest-choice s1=normal-wb effective=normal-nc .* unaligned=ok .* verify=ok'
    'WC-RESULT bdf=00:01\.0 bar=0 policy=guest-choice s1=device-ngnre effective=device-ngnre .* unaligned=fault'
    'WC-SUMMARY ok'
)
REJECT=('panicked at' 'verify=FAIL' 'WC-SUMMARY FAIL')

check() {
    local n
    n=$(grep -c 'WC-RESULT ' "$1" || true)
    ((n == 10)) || { echo "expected 10 WC-RESULT lines (2 BARs x 5 types), saw $n"; return 1; }
}
