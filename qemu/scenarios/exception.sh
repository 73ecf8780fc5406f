# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="an undefined instruction at EL2 is reported with ESR_EL2/ELR_EL2, exit 3 (unexpected exception at EL2)"
TIMEOUT=20
APPEND="selftest=undef"
EXPECT_EXIT=3
EXPECT=(
    'Unknown reason|UNDEF'
    'ESR_EL2'
    'ELR_EL2'
    'EC=0x00'
    'bt #0 .*selftest_undef'
)
