# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="runaway recursion hits the stack guard and is reported, exit 3 (unexpected exception at EL2)"
TIMEOUT=20
APPEND="selftest=stack-overflow"
EXPECT_EXIT=3
EXPECT=(
    "stack overflow: CPU 0's main stack ran into its guard page"
    'bt #0 pc=0x[0-9a-f]+ off=0x[0-9a-f]+ .*selftest_recurse'
)
