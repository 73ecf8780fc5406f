# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="the RAS error record registers are trapped (HCR_EL2.TERR) and read as zero (ERRIDR_EL1: NUM = 0): the host's records stay out of the guest's reach"
TIMEOUT=40
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=exit-hostile -- probe=ras"
EXPECT_EXIT=0
EXPECT=(
    'GUEST exit-hostile ras: ERRIDR_EL1 -> no-exception par=0x0 expect no-exception par=0x0 ok'
    'GUEST exit-hostile ras: accesses the hypervisor answered \(HCR_EL2.TERR\) -> 0x2 expect 0x2 ok'
    'GUEST exit-hostile all: hypervisor alive -> yes expect yes ok'
    '\[guest\] GUEST result: PASS'
    'stopping: system off'
)
REJECT=('panicked at' ' FAIL' 'GUEST unexpected')
