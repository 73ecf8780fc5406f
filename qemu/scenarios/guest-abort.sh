# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="the guest touches an unmapped IPA and does an STP to emulated MMIO: both abort, the hypervisor stays up"
TIMEOUT=40
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=abort"
EXPECT_EXIT=0
EXPECT=(
    'GUEST abort: unmapped load -> data abort ESR_EL1=0x96000010 FAR=0xb000000'
    'GUEST abort: stp to emulated MMIO -> data abort ESR_EL1=0x960000[0-9a-f]{2} FAR=0x9000008'
    'has no syndrome; injecting an abort'
    'GUEST abort: alive after both: yes'
    '\[guest\] GUEST result: PASS'
    'stopping: system off'
)
