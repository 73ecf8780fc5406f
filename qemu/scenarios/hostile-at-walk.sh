# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="AT S1E1R on a VA whose stage-1 table is in a hole aborts (external abort on walk) instead of being skipped with a stale PAR_EL1"
TIMEOUT=40
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=exit-hostile -- probe=at-walk"
EXPECT_EXIT=0
EXPECT=(
    'GUEST exit-hostile at-walk: AT S1E1R with its level-3 table in a hole -> esr=0x960000[15][4-7] far=0xe0200000 .* ok'
    'GUEST exit-hostile at-walk: HV_EFFECTIVE_ATTRS there -> par=0x[0-9a-f]+ .* ok'
    'GUEST exit-hostile all: hypervisor alive -> yes expect yes ok'
    '\[guest\] GUEST result: PASS'
    'stopping: system off'
)
REJECT=('panicked at' ' FAIL' 'GUEST unexpected')
