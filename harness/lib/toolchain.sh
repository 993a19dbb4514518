# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# The build and test toolchains: debootstrapped Debian trixie chroots with
# trixie-backports, one for each section of harness/packages.pin ("boot", the
# chroot every command runs in, and "newest", the newest Rust's build), each
# keyed by the hash of its sections and cached under $HIBSNAP_CACHE. What
# they install is resolved against the archive of the day by
# harness/inner/pins. Sourced by harness/hibsnap.

MIRROR=${HIBSNAP_MIRROR:-http://deb.debian.org/debian}

die() { echo "hibsnap: error: $*" >&2; exit 1; }
say() { echo "hibsnap: $*" >&2; }

# toolchain_key SECTION: the hash of SECTION's and [both]'s lines.
toolchain_key() {
	awk -v want="$1" '
		/^\[[a-z]+\]$/ { sec = substr($1, 2, length($1) - 2); next }
		/^[[:space:]]*(#|$)/ { next }
		sec == want || sec == "both" { print sec, $0 }' "$HARNESS/packages.pin" |
		sha256sum | cut -c1-12
}

# Install the host's only prerequisite (debootstrap) from Debian's packages.
host_prereqs() {
	[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mounts need it)"
	command -v debootstrap >/dev/null && return
	command -v apt-get >/dev/null || die "no debootstrap and no apt-get: install debootstrap by hand"
	say "installing debootstrap on the host"
	apt-get update -qq || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
		|| die "apt-get install debootstrap failed"
}

chroot_mount() {
	local root=$1
	mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
	mountpoint -q "$root/sys" || mount -t sysfs sys "$root/sys"
	mountpoint -q "$root/dev" || { mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"; }
	mkdir -p "$root/hibsnap/repo" "$root/hibsnap/cache"
	# A run that was killed may have left these bound to another checkout:
	# always bind this one.
	mountpoint -q "$root/hibsnap/repo" && umount -l "$root/hibsnap/repo"
	mountpoint -q "$root/hibsnap/cache" && umount -l "$root/hibsnap/cache"
	mount --bind "$REPO" "$root/hibsnap/repo"
	mount --bind "$HIBSNAP_CACHE/work" "$root/hibsnap/cache"
	cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
	# The host's CA certificates, for cargo's downloads from crates.io: where
	# the host reaches the internet through a TLS-inspecting proxy, only its
	# own store has that proxy's CA.
	mkdir -p "$root/etc/hibsnap"
	cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/hibsnap/host-ca.crt" 2>/dev/null \
		|| cp -L "$root/etc/ssl/certs/ca-certificates.crt" "$root/etc/hibsnap/host-ca.crt" 2>/dev/null || true
}

chroot_umount() {
	local root=$1 m
	[ -n "$root" ] && [ -d "$root" ] || return 0
	for m in hibsnap/cache hibsnap/repo dev sys proc; do
		mountpoint -q "$root/$m" && umount -R -l "$root/$m"
	done
	return 0
}

# in_root ROOT COMMAND...: run a command inside the chroot ROOT with a clean
# environment: the host's rustup toolchain must never leak into the kernel
# build. in_chroot runs it in the boot chroot, $CHROOT.
in_root() {
	local root=$1
	shift
	env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HIBSNAP_JOBS="$HIBSNAP_JOBS" HIBSNAP_VERBOSE="${HIBSNAP_VERBOSE:-}" \
		HIBSNAP_TIMEOUT="${HIBSNAP_TIMEOUT:-}" HIBSNAP_T0="${HIBSNAP_T0:-}" \
		CARGO_HTTP_CAINFO=/etc/hibsnap/host-ca.crt \
		chroot "$root" "$@"
}

in_chroot() {
	in_root "$CHROOT" "$@"
}

in_newest() {
	in_root "$NEWEST" "$@"
}

# debootstrap_base DIR: a minimal trixie with hibsnap's apt sources, made once
# per setup and copied for each chroot that is missing.
debootstrap_base() {
	local dir=$1
	[ -f "$dir/.hibsnap-base" ] && return 0
	rm -rf --one-file-system "$dir"
	say "debootstrap: a minimal Debian trixie (about 2 minutes)"
	debootstrap --variant=minbase trixie "$dir" "$MIRROR" >"$HIBSNAP_CACHE/debootstrap.log" 2>&1 \
		|| die "debootstrap failed, see $HIBSNAP_CACHE/debootstrap.log"
	cat >"$dir/etc/apt/sources.list" <<SRC
deb $MIRROR trixie main
deb $MIRROR trixie-updates main
deb http://deb.debian.org/debian-security trixie-security main
deb $MIRROR trixie-backports main
SRC
	touch "$dir/.hibsnap-base"
}

# ensure_chroot SECTION: the chroot of SECTION of harness/packages.pin, made
# if missing; its path in $ROOT. The packages are resolved against today's
# archive (harness/inner/pins): a known-good version that is gone is replaced
# by its suite's current one, said on one line and kept in the chroot's
# .hibsnap-resolved; a package that is not served at all fails the setup.
ensure_chroot() {
	local sec=$1 key tmp old specs
	key=$(toolchain_key "$sec")
	ROOT=$HIBSNAP_CACHE/chroot-$sec-$key
	[ -f "$ROOT/.hibsnap-ready" ] && return 0
	tmp=$ROOT.tmp
	chroot_umount "$tmp"
	rm -rf --one-file-system "$tmp"
	debootstrap_base "$HIBSNAP_CACHE/base.tmp"
	say "creating the $sec toolchain chroot $ROOT"
	cp -a "$HIBSNAP_CACHE/base.tmp" "$tmp"
	CLEANUP_ROOT=$tmp
	chroot_mount "$tmp"
	trap 'chroot_umount "$CLEANUP_ROOT"' EXIT
	in_root "$tmp" apt-get update -qq || die "apt-get update in the chroot failed"
	: >"$tmp/.hibsnap-resolved"
	specs=$(in_root "$tmp" env PINS_NOTES=/.hibsnap-resolved \
		/hibsnap/repo/harness/inner/pins resolve /hibsnap/repo/harness/packages.pin "$sec") \
		|| die "harness/packages.pin [$sec] does not resolve against the archive (above)"
	# shellcheck disable=SC2086 # one apt-get argument per line
	in_root "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $specs >"$HIBSNAP_CACHE/apt-$sec.log" 2>&1 \
		|| { tail -20 "$HIBSNAP_CACHE/apt-$sec.log" >&2; die "package install failed, see $HIBSNAP_CACHE/apt-$sec.log"; }
	in_root "$tmp" apt-get clean
	in_root "$tmp" dpkg-query -W >"$tmp/.hibsnap-versions"
	chroot_umount "$tmp"
	trap - EXIT
	touch "$tmp/.hibsnap-ready"
	mv "$tmp" "$ROOT"
	# Chroots of this section for other pins (and the one-chroot layout
	# before the sections) are no longer needed.
	for old in "$HIBSNAP_CACHE"/chroot-"$sec"-* "$HIBSNAP_CACHE"/chroot-????????????; do
		[ -d "$old" ] && [ "$old" != "$ROOT" ] || continue
		chroot_umount "$old"
		rm -rf --one-file-system "$old"
	done
	say "$sec toolchain ready: $(in_root "$ROOT" rustc --version)"
}

# toolchain_ensure [newest]: the boot chroot in $CHROOT and, when asked for
# (the test and newest commands), the newest Rust's in $NEWEST.
toolchain_ensure() {
	local sec
	host_prereqs
	mkdir -p "$HIBSNAP_CACHE/work"
	ensure_chroot boot
	CHROOT=$ROOT
	NEWEST=
	if [ "${1:-}" = newest ]; then
		ensure_chroot newest
		NEWEST=$ROOT
	fi
	rm -rf --one-file-system "$HIBSNAP_CACHE/base.tmp"
	for sec in boot newest; do
		[ "$sec" = boot ] && ROOT=$CHROOT || ROOT=$NEWEST
		[ -n "$ROOT" ] && [ -s "$ROOT/.hibsnap-resolved" ] &&
			sed "s/^/hibsnap: $sec toolchain: /" "$ROOT/.hibsnap-resolved" >&2
	done
	return 0
}
