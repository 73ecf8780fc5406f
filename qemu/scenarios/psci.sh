# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="the guest calls every PSCI and SMCCC function and checks each answer"
TIMEOUT=40
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=psci"
EXPECT_EXIT=0
EXPECT=(
    'GUEST psci PSCI_VERSION -> 0x10001 .* ok'
    'GUEST psci SMCCC_VERSION -> 0x10001 .* ok'
    'GUEST psci CPU_ON\(self\) -> -4\(ALREADY_ON\) .* ok'
    'GUEST psci CPU_ON\(0xff\) -> -2\(INVALID_PARAMETERS\) .* ok'
    'GUEST psci unknown function 1337 -> -1\(NOT_SUPPORTED\) .* ok'
    'GUEST psci hvc #1 PSCI_VERSION -> -1\(NOT_SUPPORTED\) .* ok'
    '\[guest\] GUEST result: PASS'
    'vm: the guest powered off'
)
REJECT=('panicked at' 'GUEST psci .* FAIL')

check() {
    local n
    n=$(grep -cE 'GUEST psci .* ok\s*$' "$1" || true)
    if [ "$n" -lt 19 ]; then
        echo "expected at least 19 checked PSCI/SMCCC answers, saw $n"
        return 1
    fi
}
