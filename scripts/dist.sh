#!/usr/bin/env bash
# Cross-builds the release archives into OUT (default bin/dist): one per
# platform, each with the static binary, README, LICENSE, man pages, shell
# completions and the systemd unit, plus SHA256SUMS over the archives.
# Archives are reproducible: entries sorted, owned by 0:0, dated at the
# commit. Usage: scripts/dist.sh [OUT] (VERSION from the environment).
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
OUT=${1:-bin/dist}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo devel)}
PLATFORMS=${PLATFORMS:-"linux/amd64 linux/arm64 darwin/arm64 windows/amd64"}
STAMP=$(git log -1 --format=%ct 2>/dev/null || date +%s)
LDFLAGS="-s -w -X github.com/tempel-ksi/tempel/internal/buildinfo.Version=$VERSION"

rm -rf "$OUT" && mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT

# The pages and completions come from a binary for this machine; they are
# the same for every platform.
"$GO" build -buildvcs=auto -trimpath -ldflags "$LDFLAGS" -o "$work/tempel-host" ./cmd/tempel
"$work/tempel-host" man "$work/common/man" >/dev/null
mkdir -p "$work/common/completion"
for sh in bash zsh fish; do "$work/tempel-host" completion "$sh" >"$work/common/completion/tempel.$sh"; done
cp README.md LICENSE "$work/common/"
cp deploy/tempel.service "$work/common/"

for p in $PLATFORMS; do
	os=${p%/*} arch=${p#*/}
	name="tempel-$VERSION-$os-$arch"
	dir="$work/$name"
	exe=tempel; [ "$os" = windows ] && exe=tempel.exe
	echo "== $name"
	mkdir -p "$dir"
	# Pure Go (no cgo): static, runs on any libc; PKCS#11 needs a cgo
	# build (make build on the target).
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -buildvcs=auto -trimpath -ldflags "$LDFLAGS" -o "$dir/$exe" ./cmd/tempel
	cp -r "$work/common/." "$dir/"
	find "$dir" -exec touch -h -d "@$STAMP" {} +
	if [ "$os" = windows ]; then
		(cd "$work" && find "$name" | LC_ALL=C sort | TZ=UTC zip -q -X -@ "$OUT/$name.zip")
	else
		tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$STAMP" \
			-C "$work" -cf - "$name" | gzip -n -9 >"$OUT/$name.tar.gz"
	fi
done
(cd "$OUT" && shopt -s nullglob && sha256sum -- *.tar.gz *.zip >SHA256SUMS)
cat "$OUT/SHA256SUMS"
