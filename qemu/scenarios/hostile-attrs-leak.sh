# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="HV_EFFECTIVE_ATTRS hands out the memory attributes of guest RAM but never its host physical address"
TIMEOUT=40
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=exit-hostile -- probe=attrs-leak"
EXPECT_EXIT=0
EXPECT=(
    'GUEST exit-hostile attrs-leak: HV_EFFECTIVE_ATTRS of guest RAM: F -> 0x0 expect 0x0 ok'
    'GUEST exit-hostile attrs-leak: HV_EFFECTIVE_ATTRS of guest RAM: address bits 55:12 -> 0x0 expect 0x0 ok'
    'GUEST exit-hostile attrs-leak: HV_EFFECTIVE_ATTRS of guest RAM: ATTR -> 0xff expect 0xff ok'
    'GUEST exit-hostile attrs-leak: HV_EFFECTIVE_ATTRS of a failed walk: bits 63:12 -> 0x0 expect 0x0 ok'
    'GUEST exit-hostile all: hypervisor alive -> yes expect yes ok'
    '\[guest\] GUEST result: PASS'
    'stopping: system off'
)
REJECT=('panicked at' ' FAIL' 'GUEST unexpected')
