# shellcheck shell=bash
# Scenario definition, sourced by scripts/test and scripts/run --scenario
# (format: scripts/lib/scenario.sh).
# shellcheck disable=SC2034

DESCRIPTION="an arm64 Image guest is loaded at its header's text_offset"
TIMEOUT=40
APPEND="guest.bootargs=test=hello"
EXPECT_EXIT=0
EXPECT=(
    'vm: .* arm64 Image of [0-9]+ KiB at 0x40080000, entry 0x40080000'
    '\[guest\] GUEST boot: entered at EL1, running at EL1, image at 0x40080000'
    '\[guest\] GUEST result: PASS'
    'stopping: system off'
)

# The test guest with text_offset (u64 at byte 8) = 0x80000, the value
# older arm64 kernels use.
prepare() {
    local img=$OUT/guest-text-offset.bin
    cp "$GUEST_BIN" "$img"
    printf '\x00\x00\x08\x00\x00\x00\x00\x00' | dd of="$img" bs=1 seek=8 count=8 conv=notrunc status=none
    INITRD=$img
}
