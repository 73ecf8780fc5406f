# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="check=attributes on -cpu max (FWB, DIC): every stage-2 policy x stage-1 type through AT S12E1R/W"
TIMEOUT=30
CPU=max
APPEND="check=attributes"
EXPECT_EXIT=0
EXPECT=(
    'ATTR-CHECK summary: [0-9]+ ok, 0 failed'
    'ATTR-CHECK cpu=max fwb=1 '
    'ATTR-CHECK cpu=max fwb=1 s2=cacheable s1=normal-wb at=w par=0xff expect=0xff ok'
)
REJECT=("panicked at" ' FAIL' 'refused-as-expected:')

# 5 policies (cacheable allowed) x 7 stage-1 types x 2 accesses.
check() {
    local n
    n=$(grep -cE '^ATTR-CHECK cpu=[^ ]+ fwb=[01] s2=[a-z-]+ s1=[a-z-]+ at=[rw] ' "$1")
    [[ $n -eq 70 ]] || {
        echo "expected 70 ATTR-CHECK lines, got $n"
        return 1
    }
    grep -qE '^ATTR-CHECK summary: 70 ok, 0 failed, 0 refused-as-expected' "$1" || {
        echo "summary does not say 70 ok, 0 failed, 0 refused-as-expected"
        return 1
    }
}
