# Shared by the appliance's scripts (busybox ash).

# say: a line on every console the kernel writes to (console=tty0
# console=ttyS0: the screen and the serial port), where /dev/console is
# only the last one named.
say() {
	local c printed=
	for c in $(cat /sys/class/tty/console/active 2>/dev/null); do
		[ -c "/dev/$c" ] || continue
		echo "vmgate-image: $*" >"/dev/$c" 2>/dev/null && printed=1
	done
	[ -n "$printed" ] || echo "vmgate-image: $*" >/dev/console
}

# cmdline_arg NAME: the value of NAME= on the kernel command line.
cmdline_arg() {
	local a
	for a in $(cat /proc/cmdline); do
		case "$a" in
		"$1"=*) echo "${a#*=}"; return 0 ;;
		esac
	done
	return 1
}

# fat_label DEV: the volume label of a FAT file system (boot sector: FAT32
# keeps it at offset 71 and says "FAT32" at 82, FAT12/16 at 43 and 54).
fat_label() {
	local t
	t=$(dd if="$1" bs=1 skip=82 count=5 2>/dev/null)
	if [ "$t" = FAT32 ]; then
		dd if="$1" bs=1 skip=71 count=11 2>/dev/null
		return 0
	fi
	t=$(dd if="$1" bs=1 skip=54 count=3 2>/dev/null)
	[ "$t" = FAT ] || return 1
	dd if="$1" bs=1 skip=43 count=11 2>/dev/null
}

# ext_label DEV: the label of an ext2/3/4 file system (superblock at 1024:
# magic 0xEF53 at +56, s_volume_name at +120).
ext_label() {
	local m
	m=$(dd if="$1" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')
	[ "$m" = 53ef ] || return 1
	dd if="$1" bs=1 skip=1144 count=16 2>/dev/null | tr -d '\000'
}

# blank DEV: true when the first MiB of DEV is all zeros: a partition
# nothing was ever written to, the only kind first boot formats.
blank() {
	[ "$(dd if="$1" bs=65536 count=16 2>/dev/null | tr -d '\000' |
		head -c 1 | wc -c)" -eq 0 ]
}

# part_name DEV: the GPT partition name the kernel read (PARTNAME).
part_name() {
	sed -n 's/^PARTNAME=//p' "/sys/class/block/${1##*/}/uevent" 2>/dev/null
}

# block_devs: every disk and partition, in name order.
block_devs() {
	local b
	for b in /sys/class/block/*; do
		[ -e "$b" ] && echo "/dev/${b##*/}"
	done | sort
}

# find_config: mount the first VMGATECFG FAT file system holding an
# appliance.yaml read-only at /config. Returns 1 when there is none.
find_config() {
	local d
	grep -q ' /config ' /proc/mounts && return 0
	for d in $(block_devs); do
		[ "$(fat_label "$d" | sed 's/ *$//')" = VMGATECFG ] || continue
		mount -t vfat -o ro,nodev,nosuid,noexec "$d" /config 2>/dev/null || continue
		if [ -f /config/appliance.yaml ]; then
			say "config: $d mounted read-only at /config"
			return 0
		fi
		say "config: $d is VMGATECFG but holds no appliance.yaml, skipped"
		umount /config
	done
	return 1
}
