# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="a load from an address outside the EL2 map is reported with its decoded syndrome, exit 3 (unexpected exception at EL2)"
TIMEOUT=30
APPEND="selftest=data-abort"
EXPECT_EXIT=3
EXPECT=(
    'FATAL: unexpected synchronous exception from EL2'
    'EC=0x25 \(Data Abort from the current EL\)|EC=0x25'
    'DFSC=0x0[4-7] \(translation fault, level [0-3]\)'
    'FAR_EL2=0x10 '
    'bt #[0-9]+ .*selftest_data_abort'
)
