# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="boot on virt with a GICv2 interrupt controller"
TIMEOUT=30
MACHINE=virt,virtualization=on,gic-version=2
APPEND="log=debug"
EXPECT_EXIT=0
EXPECT=(
    'GICv2'
    'stopping: system off'
)
