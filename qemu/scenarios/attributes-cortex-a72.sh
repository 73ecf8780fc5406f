# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="check=attributes on -cpu cortex-a72 (no FWB, no DIC): BAR policy cacheable refused, the rest through AT S12E1R/W"
TIMEOUT=30
CPU=cortex-a72
APPEND="check=attributes"
EXPECT_EXIT=0
EXPECT=(
    'ATTR-CHECK summary: [0-9]+ ok, 0 failed'
    'ATTR-CHECK cpu=cortex-a72 fwb=0 '
    's2=cacheable refused-as-expected: .*FEAT_S2FWB'
    'ATTR-CHECK cpu=cortex-a72 fwb=0 s2=ram s1=normal-nc at=r par=0x44 expect=0x44 ok'
)
REJECT=("panicked at" ' FAIL' 's2=cacheable s1=')

# 4 policies (cacheable refused) x 7 stage-1 types x 2 accesses.
check() {
    local n
    n=$(grep -cE '^ATTR-CHECK cpu=[^ ]+ fwb=[01] s2=[a-z-]+ s1=[a-z-]+ at=[rw] ' "$1")
    [[ $n -eq 56 ]] || {
        echo "expected 56 ATTR-CHECK lines, got $n"
        return 1
    }
    grep -qE '^ATTR-CHECK summary: 56 ok, 0 failed, 1 refused-as-expected' "$1" || {
        echo "summary does not say 56 ok, 0 failed, 1 refused-as-expected"
        return 1
    }
}
