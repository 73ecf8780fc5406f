# Project gdb commands for debugging the hypervisor, sourced by scripts/debug
# after the symbols are loaded and gdb is attached to QEMU. Add convenience
# commands and settings here.
