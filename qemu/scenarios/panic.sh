# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="a deliberate panic prints a symbolized backtrace and exits with 2 (hypervisor panic)"
TIMEOUT=20
APPEND="selftest=panic"
EXPECT_EXIT=2
EXPECT=(
    'panicked at'
    # A backtrace frame resolved by the symbolizer into the self-test code.
    'bt #[0-9]+ pc=0x[0-9a-fA-F]+ off=0x[0-9a-fA-F]+ .*selftest'
)
REJECT=()
