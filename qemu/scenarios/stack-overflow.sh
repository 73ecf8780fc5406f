# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="runaway recursion hits the stack guard and is reported, exit 1"
TIMEOUT=20
APPEND="selftest=stack-overflow"
EXPECT_EXIT=1
EXPECT=(
    'stack overflow'
)
