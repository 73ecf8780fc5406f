# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="boot on virt with EL2 and GICv3, probe the platform, stop cleanly"
TIMEOUT=30
MACHINE=virt,virtualization=on,gic-version=3
CPU=max
MEM=1G
SMP=1
APPEND="log=debug"
EXPECT_EXIT=0
EXPECT=(
    'loaded at 0x40200000'
    'platform:'
    'FWB'
    'DIC'
    'PARange'
    'GICv3'
    'PCIe'
    'stopping: system off'
)
