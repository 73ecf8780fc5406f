# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="without virtualization=on the hypervisor starts at EL1 and must refuse to run"
TIMEOUT=20
MACHINE=virt,gic-version=3
APPEND="log=debug"
EXPECT_EXIT=1
EXPECT=(
    'EL1'
    'virtualization=on'
)
