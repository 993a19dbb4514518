# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
#
# The build and test toolchain: a debootstrapped Debian trixie chroot with
# trixie-backports, keyed by the hash of harness/packages.pin and cached under
# $HIBSNAP_CACHE. Sourced by harness/hibsnap.

MIRROR=${HIBSNAP_MIRROR:-http://deb.debian.org/debian}

die() { echo "hibsnap: error: $*" >&2; exit 1; }
say() { echo "hibsnap: $*" >&2; }

toolchain_key() {
	sha256sum "$HARNESS/packages.pin" | cut -c1-12
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

# Run a command inside the chroot with a clean environment: the host's
# rustup toolchain must never leak into the kernel build.
in_chroot() {
	env -i HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HIBSNAP_JOBS="$HIBSNAP_JOBS" HIBSNAP_VERBOSE="${HIBSNAP_VERBOSE:-}" \
		HIBSNAP_TIMEOUT="${HIBSNAP_TIMEOUT:-}" \
		CARGO_HTTP_CAINFO=/etc/hibsnap/host-ca.crt \
		chroot "$CHROOT" "$@"
}

# Create (or reuse) the chroot for the current packages.pin.
toolchain_ensure() {
	local key tmp specs suite line name ver
	host_prereqs
	key=$(toolchain_key)
	CHROOT=$HIBSNAP_CACHE/chroot-$key
	mkdir -p "$HIBSNAP_CACHE/work"
	if [ -f "$CHROOT/.hibsnap-ready" ]; then
		return 0
	fi
	tmp=$CHROOT.tmp
	chroot_umount "$tmp"
	rm -rf --one-file-system "$tmp"
	say "creating the toolchain chroot $CHROOT (about 2 minutes)"
	debootstrap --variant=minbase trixie "$tmp" "$MIRROR" >"$HIBSNAP_CACHE/debootstrap.log" 2>&1 \
		|| die "debootstrap failed, see $HIBSNAP_CACHE/debootstrap.log"
	cat >"$tmp/etc/apt/sources.list" <<SRC
deb $MIRROR trixie main
deb $MIRROR trixie-updates main
deb http://deb.debian.org/debian-security trixie-security main
deb $MIRROR trixie-backports main
SRC
	# snapshot.debian.org serves old archive states (the pinned versions after
	# the archive moved on); their Release files are expired by design.
	case $MIRROR in
	*snapshot.debian.org*)
		echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99hibsnap-snapshot" ;;
	esac
	specs=()
	while read -r line suite; do
		case "$line" in ''|'#'*) continue ;; esac
		name=${line%%=*}
		ver=
		[ "$name" != "$line" ] && ver=${line#*=}
		# apt takes NAME=VERSION or NAME/SUITE, not both.
		if [ -n "$ver" ]; then
			specs+=("$name=$ver")
		elif [ -n "$suite" ]; then
			specs+=("$name/$suite")
		else
			specs+=("$name")
		fi
	done <"$HARNESS/packages.pin"
	CHROOT=$tmp
	chroot_mount "$tmp"
	trap 'chroot_umount "$CHROOT"' EXIT
	in_chroot apt-get update -qq || die "apt-get update in the chroot failed"
	in_chroot env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${specs[@]}" >"$HIBSNAP_CACHE/apt.log" 2>&1 \
		|| { tail -20 "$HIBSNAP_CACHE/apt.log" >&2; die "package install failed, see $HIBSNAP_CACHE/apt.log. A pinned version gone from the mirror? Bump it in harness/packages.pin, or set HIBSNAP_MIRROR to a snapshot.debian.org archive state (README)"; }
	in_chroot apt-get clean
	in_chroot dpkg-query -W >"$tmp/.hibsnap-versions"
	chroot_umount "$tmp"
	trap - EXIT
	touch "$tmp/.hibsnap-ready"
	mv "$tmp" "$HIBSNAP_CACHE/chroot-$key"
	CHROOT=$HIBSNAP_CACHE/chroot-$key
	# Old chroots for other pin files are no longer needed.
	for old in "$HIBSNAP_CACHE"/chroot-*; do
		[ "$old" = "$CHROOT" ] && continue
		chroot_umount "$old"
		rm -rf --one-file-system "$old"
	done
	say "toolchain ready"
}
