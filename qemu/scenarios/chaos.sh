# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="100000 seeded random hostile guest actions, each recovered from; the hypervisor, the guest's RAM and the physical BARs survive"
TIMEOUT=150
INITRD=$GUEST_BIN
APPEND="guest.bootargs=test=chaos -- seed=1 actions=100000"
EXPECT_EXIT=0
EXPECT=(
    'GUEST chaos: canary intact'
    'CHAOS seed=1 actions=100000 aborts=[0-9]+ undefs=[0-9]+ hypervisor=alive'
    '\[guest\] GUEST result: PASS'
)
REJECT=('panicked at' 'GUEST chaos FAIL' 'GUEST unexpected')
