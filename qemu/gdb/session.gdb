# Batch commands for the gdb scenario, run after scripts/debug stopped at
# the hypervisor's rust_entry on the default machine: what a user does, each
# step marked with a GDB-CHECK line that qemu/scenarios/gdb.sh looks for.

echo GDB-CHECK before the VM\n
hv-vcpu
hv-stage2 0x40000000

# The guest's first instruction, one instruction step, stage 2 there.
break *0x40000000
continue
echo GDB-CHECK guest entry reached\n
info registers pc
stepi
echo GDB-CHECK stepped\n
info registers pc
hv-stage2 0x40000000
hv-stage2 0x09000000
delete

# A guest function by name, then a source-level step in the guest.
break guest_payload::arch::wc::run
continue
echo GDB-CHECK guest function reached\n
info line *$pc
step
echo GDB-CHECK guest step\n
info line *$pc
delete

# The hypervisor's exit path, by the documented breakpoints.
hv-break-exit
continue
echo GDB-CHECK exit handler reached\n
hv-vcpu 0
hv-vcpu 1
continue
echo GDB-CHECK second exit\n
hv-exits
hv-threads
delete
hv-break-mmio
continue
echo GDB-CHECK mmio dispatch reached\n
bt 1
delete
hv-break-inject
delete

# The guest's Memory Space Enable maps BAR0 (32-bit), then BAR2 (64-bit).
hv-break-bar
continue
continue
finish
echo GDB-CHECK BAR mapped\n
hv-stage2 0x8000000000
hv-stage2 0 0x10000000000
delete

# The guest runs to its end; then the helpers say the machine is gone.
continue
echo GDB-CHECK after the end\n
hv-vcpu
hv-stage2 0x40000000
hv-exits
