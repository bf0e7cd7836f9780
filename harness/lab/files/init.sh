#!/bin/busybox sh
# PID 1 of every lab guest (L1 "host" and the L2 guests), from the lab's initramfs.
# It borrows the level above's / read-only over 9p, puts a tmpfs overlay on top, and runs sshd
# (and, on L1, the L2 qemus) chrooted into that. Settings come from the kernel command line:
#   hvlab.name=l1 hvlab.level=1|2 hvlab.cache=<cache dir> hvlab.guests=N hvlab.cid=21 hvlab.loopback=0|1
#   hvlab.ttl=<seconds> hvlab.gkernel=<guests' vmlinux> hvlab.ginitrd=<guests' initramfs> (L1 only:
#   the guests may run another kernel than L1)
#   hvlab.netns=1 hvlab.gnetns=global0,local0,local1 (L1 only, `lab up --netns`: vsock network
#   namespaces as harness/lab/netns.py lays them out, and the namespace of each guest's qemu)
#   hvlab.hybrid=N hvlab.vdv=<vhost-device-vsock binary> hvlab.hmode=shared|per-guest (L1 only: N
#   hybrid vsock guests vm31.. whose vsock device is vhost-user, served by the backend in L1)
# Lines starting with "hvlab:" on the console are the progress the controller shows.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

name=guest; level=2; cache=; guests=0; cid=; loopback=0; ttl=14400; gkernel=; ginitrd=; netns=0; gnetns=
hybrid=0; vdv=; hmode=shared
gboot=  # the guests boot with l1's own kernel words (harness/lab/qemu.py BOOT_WORDS) but its hvlab.* ones
for w in $(cat /proc/cmdline); do
  case "$w" in
    hvlab.*|tsc_early_khz=*) ;; *) gboot="$gboot $w";;
  esac
  case "$w" in
    hvlab.name=*) name=${w#*=};; hvlab.level=*) level=${w#*=};; hvlab.cache=*) cache=${w#*=};;
    hvlab.guests=*) guests=${w#*=};; hvlab.cid=*) cid=${w#*=};; hvlab.loopback=*) loopback=${w#*=};;
    hvlab.ttl=*) ttl=${w#*=};; hvlab.gkernel=*) gkernel=${w#*=};; hvlab.ginitrd=*) ginitrd=${w#*=};;
    hvlab.netns=*) netns=${w#*=};; hvlab.gnetns=*) gnetns=${w#*=};;
    hvlab.hybrid=*) hybrid=${w#*=};; hvlab.vdv=*) vdv=${w#*=};; hvlab.hmode=*) hmode=${w#*=};;
  esac
done
say() { echo "hvlab: $name: $*" > /dev/console; }
fail() { say "FAILED: $*"; sleep 5; poweroff -f; }
say "init started (uptime $(cut -d' ' -f1 /proc/uptime)s)"
hostname "$name"

load() {  # insmod in the given order; built-in modules have no .ko and are skipped
  for m in "$@"; do
    [ -f "/modules/$m.ko" ] || continue
    insmod "/modules/$m.ko" 2>/tmp/insmod.err || say "insmod $m: $(cat /tmp/insmod.err)"
  done
}
load $(cat /modules/base.order)
say "base modules loaded"

mkdir -p /lower /ovl /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro root /lower || fail "9p root"
mount -t tmpfs -o size=50% ovl /ovl
mkdir -p /ovl/upper /ovl/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/ovl/upper,workdir=/ovl/work /newroot || fail "overlay"
mount --bind /proc /newroot/proc
mount --bind /sys /newroot/sys
mount --bind /dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs shm /newroot/dev/shm
mount -t tmpfs -o mode=0755 run /newroot/run
# /tmp stays the overlay's (writes land in the tmpfs upper layer): a cache under /tmp
# ($HVSOCK_MATRIX_CACHE=/tmp/...) must stay visible to L1 and L2
if [ "$level" = 1 ]; then
  # the controller's run folder, read-write: L2 consoles and logs land there
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 labrun "/newroot$cache/run" || fail "9p run"
fi
say "root mounted (9p + overlay)"

# The marker that lets the probe open AF_VSOCK: in this guest's own /run tmpfs, never on 9p.
echo "$name" > /newroot/run/hvsock-matrix-lab-guest

if [ "$level" = 1 ]; then
  load $(cat /modules/l1.order)
else
  load $(cat /modules/l2.order)
  [ "$loopback" = 1 ] && load $(cat /modules/loopback.order)
fi
say "kernel $(uname -r)"
say "vsock modules: $(cut -d' ' -f1 /proc/modules | grep -E 'vsock|vhost' | tr '\n' ' ')"

ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2

# sshd: lab-only config, own host key, lab key only. Shell start files replaced in the overlay
# only (the shared ones may run pyenv: 7 s per login under TCG).
mkdir -p /newroot/run/hvlab /newroot/run/sshd
cp "/newroot$cache/keys/ssh_host_ed25519_key.$name" /newroot/run/hvlab/ssh_host_ed25519_key || fail "host key"
cp "/newroot$cache/keys/id_ed25519.pub" /newroot/run/hvlab/authorized_keys || fail "lab key"
chmod 600 /newroot/run/hvlab/ssh_host_ed25519_key
cat > /newroot/run/hvlab/sshd_config <<CFG
Port 22
HostKey /run/hvlab/ssh_host_ed25519_key
AuthorizedKeysFile /run/hvlab/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile /run/sshd.pid
UseDNS no
LoginGraceTime 600
PrintMotd no
PrintLastLog no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
CFG
mkdir -p /newroot/root
printf 'export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin\n' > /newroot/root/.bashrc
cp /newroot/root/.bashrc /newroot/root/.profile
rm -f /newroot/root/.bash_profile /newroot/root/.bash_login
# root's login shell: dash instead of bash, in the overlay's /etc/passwd only (a bash start costs
# seconds in a nested guest; the SSH transport sends POSIX commands)
awk -F: -v OFS=: '$1 == "root" { $7 = "/bin/sh" } { print }' /newroot/etc/passwd > /tmp/passwd \
  && cat /tmp/passwd > /newroot/etc/passwd
# vsock network namespaces (harness/lab/netns.py), before sshd answers: the controller takes
# "sshd ready" as "the lab is laid out". As vmtest.sh add_namespaces(): one parent per mode, its
# child_ns_mode written once, the children made from inside it with nsenter (ip netns exec would
# unshare the mount namespace); lo up in each (qemu's port forward needs it, vmtest.sh
# init_namespaces()). l1's own child_ns_mode is never written. Programs by full path: busybox's
# chroot would run its own `ip` and `nsenter` applets, which know no netns.
if [ "$level" = 1 ] && [ "$netns" = 1 ]; then
  [ -e /proc/sys/net/vsock/ns_mode ] || fail "kernel $(uname -r) has no vsock network namespaces (no /proc/sys/net/vsock/ns_mode)"
  for mode in global local; do
    chroot /newroot /usr/bin/ip netns add "$mode-parent" || fail "ip netns add $mode-parent"
    echo "$mode" | chroot /newroot /usr/bin/ip netns exec "$mode-parent" tee /proc/sys/net/vsock/child_ns_mode >/dev/null \
      || fail "child_ns_mode of $mode-parent"
    for i in 0 1; do
      chroot /newroot /usr/bin/nsenter --net="/run/netns/$mode-parent" ip netns add "$mode$i" || fail "ip netns add $mode$i"
      chroot /newroot /usr/bin/ip netns exec "$mode$i" ip link set lo up || fail "lo up in $mode$i"
    done
  done
  modes=""
  for ns in global0 global1 local0 local1; do
    modes="$modes $ns=$(chroot /newroot /usr/bin/ip netns exec "$ns" cat /proc/sys/net/vsock/ns_mode)"
  done
  say "netns:$modes"
fi

# -r: no re-exec per connection (loading sshd again costs seconds under nested TCG);
# LoginGraceTime 600: a nested handshake can outlast the default 120 s under load
chroot /newroot /usr/sbin/sshd -r -f /run/hvlab/sshd_config -E /run/hvlab/sshd.log || fail "sshd"
say "sshd ready (uptime $(cut -d' ' -f1 /proc/uptime)s)"

if [ "$level" = 1 ] && [ "$guests" -gt 0 ]; then
  khz=$(awk -F': ' '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
  i=1
  while [ "$i" -le "$guests" ]; do
    gcid=$((20 + i)); gname="vm$gcid"; lb=0; [ "$i" = 1 ] && lb=1  # only vm21 gets vsock_loopback (inventory_file.py)
    gns=; inns=
    if [ "$netns" = 1 ]; then
      gns=$(echo "$gnetns" | cut -d, -f"$i"); [ -n "$gns" ] || fail "no namespace for $gname in hvlab.gnetns"
      inns="/usr/bin/ip netns exec $gns"
    fi
    say "starting $gname (cid $gcid${gns:+, netns $gns})"
    # shellcheck disable=SC2086  # $inns is empty or three words
    chroot /newroot $inns timeout -k 10 "$ttl" qemu-system-x86_64 \
      -M microvm,x-option-roms=off,rtc=on -accel tcg -m 512 -smp 1 \
      -nodefaults -no-user-config -display none \
      -serial "file:$cache/run/$gname.console.log" \
      -kernel "$gkernel" -initrd "$ginitrd" \
      -append "${gboot# } tsc_early_khz=$khz hvlab.name=$gname hvlab.level=2 hvlab.cache=$cache hvlab.cid=$gcid hvlab.loopback=$lb" \
      -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
      -device virtio-9p-device,fsdev=root,mount_tag=root \
      -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$((22000 + gcid))-:22" \
      -device virtio-net-device,netdev=n0 \
      -device "vhost-vsock-device,guest-cid=$gcid" \
      -pidfile "/run/hvlab/$gname.pid" \
      > "/newroot$cache/run/$gname.qemu.log" 2>&1 &
    if [ -n "$gns" ]; then
      # the guest's forward listens on its namespace's loopback: bridge it to l1's 127.0.0.1 through a
      # unix socket, the socat pair vmtest.sh puts between namespaces
      sock="/run/hvlab/$gname.ssh.sock"; gport=$((22000 + gcid))
      chroot /newroot /usr/bin/ip netns exec "$gns" socat "UNIX-LISTEN:$sock,fork,mode=600" "TCP:127.0.0.1:$gport" \
        > "/newroot$cache/run/$gname.bridge.log" 2>&1 &
      chroot /newroot /usr/bin/socat "TCP-LISTEN:$gport,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$sock" \
        >> "/newroot$cache/run/$gname.bridge.log" 2>&1 &
    fi
    i=$((i + 1))
  done
fi

# Hybrid vsock guests (issue 22): vm31.. get QEMU's vhost-user-vsock-device, served by rust-vmm's
# vhost-device-vsock running here in l1 (never on the controller). Their control sockets and hybrid
# UDS live in l1's own /run tmpfs (harness/lab/backend.py HYBRID_RUN_DIR). hmode=shared: one backend
# process for every hybrid guest, all in group "lab", plus a device in group "other" (CID 39) that
# no guest attaches to, so a sibling connect across groups is measured; per-guest: one process each.
if [ "$level" = 1 ] && [ "$hybrid" -gt 0 ]; then
  khz=$(awk -F': ' '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
  hdir=/run/hvlab/hybrid
  mkdir -p "/newroot$hdir"
  chmod 700 "/newroot$hdir"
  vdv_log="$cache/run/vhost-device-vsock.log"
  say "hybrid backend: $(chroot /newroot "$vdv" --version 2>&1 | head -1) ($hmode)"
  vms=""
  i=1
  while [ "$i" -le "$hybrid" ]; do
    hcid=$((30 + i)); hname="vm$hcid"
    vm="guest-cid=$hcid,socket=$hdir/$hname.vhost,uds-path=$hdir/$hname.vsock,groups=lab"
    if [ "$hmode" = per-guest ]; then
      chroot /newroot env RUST_LOG=info timeout -k 10 "$ttl" "$vdv" --vm "$vm" >> "/newroot$vdv_log.$hname" 2>&1 &
    else
      vms="$vms --vm $vm"
    fi
    i=$((i + 1))
  done
  if [ "$hmode" != per-guest ]; then
    # shellcheck disable=SC2086  # $vms is a list of --vm arguments without spaces inside
    chroot /newroot env RUST_LOG=info timeout -k 10 "$ttl" "$vdv" $vms \
      --vm "guest-cid=39,socket=$hdir/vm39.vhost,uds-path=$hdir/vm39.vsock,groups=other" >> "/newroot$vdv_log" 2>&1 &
  fi
  i=1
  while [ "$i" -le "$hybrid" ]; do
    hcid=$((30 + i)); hname="vm$hcid"; lb=0; [ "$i" = 1 ] && lb=1  # vm31 is vm21's twin: vsock_loopback
    n=0
    while [ ! -S "/newroot$hdir/$hname.vhost" ] && [ "$n" -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
    [ -S "/newroot$hdir/$hname.vhost" ] || say "FAILED: no vhost-user socket for $hname ($(tail -c 300 "/newroot$vdv_log"* 2>/dev/null | tr '\n' ' '))"
    say "starting $hname (cid $hcid, vhost-user-vsock-device)"
    chroot /newroot timeout -k 10 "$ttl" qemu-system-x86_64 \
      -M microvm,x-option-roms=off,rtc=on,memory-backend=hmem -accel tcg -m 512 -smp 1 \
      -object memory-backend-memfd,id=hmem,size=512M,share=on \
      -nodefaults -no-user-config -display none \
      -serial "file:$cache/run/$hname.console.log" \
      -kernel "$gkernel" -initrd "$ginitrd" \
      -append "${gboot# } tsc_early_khz=$khz hvlab.name=$hname hvlab.level=2 hvlab.cache=$cache hvlab.cid=$hcid hvlab.loopback=$lb" \
      -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
      -device virtio-9p-device,fsdev=root,mount_tag=root \
      -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$((22000 + hcid))-:22" \
      -device virtio-net-device,netdev=n0 \
      -chardev "socket,id=vsock0,path=$hdir/$hname.vhost" \
      -device vhost-user-vsock-device,chardev=vsock0 \
      -pidfile "/run/hvlab/$hname.pid" \
      > "/newroot$cache/run/$hname.qemu.log" 2>&1 &
    i=$((i + 1))
  done
fi

# PID 1 stays: reap children, never exit (exiting PID 1 panics the guest).
while true; do wait; sleep 60; done
