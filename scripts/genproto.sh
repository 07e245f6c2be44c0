#!/usr/bin/env bash
# genproto.sh regenerates the Go, gRPC, grpc-gateway and OpenAPI v2 code
# from proto/tempel/v1/tempel.proto. The output is committed; CI runs
# `make proto-check` and fails when it differs.
#
# Usage:
#   scripts/genproto.sh            regenerate in place, under proto/
#   scripts/genproto.sh DIR        generate into DIR instead (DIR/tempel/v1/...)
#   scripts/genproto.sh --check    generate into a temporary directory and
#                                  diff against proto/; exit 1 on a difference
#
# Versions are pinned so that regeneration is byte-identical: protoc 3.21.12
# (Debian bookworm's protobuf-compiler, installed with apt-get when missing)
# and the four plugins at the versions of the `tool` lines in go.mod
# (protoc-gen-go from google.golang.org/protobuf, protoc-gen-go-grpc,
# protoc-gen-grpc-gateway and protoc-gen-openapiv2 from grpc-gateway/v2),
# built from the module cache into a temporary directory.
set -euo pipefail

PROTOC_VERSION=3.21.12
PROTOS=(tempel/v1/tempel.proto)
GATEWAY_CONFIG=tempel/v1/tempel_gateway.yaml
OPENAPI_CONFIG=tempel/v1/tempel_openapi.yaml
PLUGINS=(
	google.golang.org/protobuf/cmd/protoc-gen-go
	google.golang.org/grpc/cmd/protoc-gen-go-grpc
	github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway
	github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2
)

root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/proto
GO=${GO:-go}

check=false
out=$src
case "${1:-}" in
--check) check=true ;;
-h | --help)
	sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
"") ;;
*) out=$(mkdir -p "$1" && cd "$1" && pwd) ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if $check; then
	out=$work/out
	mkdir -p "$out"
fi

# protoc: the version is written into every generated header, so any other
# version would produce a diff.
protoc_version() { protoc --version 2>/dev/null | awk '{print $2}'; }
if ! command -v protoc >/dev/null 2>&1; then
	echo "genproto: installing protoc (protobuf-compiler, libprotobuf-dev) with apt-get" >&2
	sudo=
	if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler libprotobuf-dev >/dev/null
fi
if [ "$(protoc_version)" != "$PROTOC_VERSION" ]; then
	echo "genproto: need protoc $PROTOC_VERSION, found '$(protoc --version 2>&1)'" >&2
	exit 1
fi

# Plugins, at the versions go.mod pins.
mkdir -p "$work/bin"
(cd "$root" && "$GO" build -o "$work/bin/" "${PLUGINS[@]}")

cd "$src"
protoc -I . \
	--plugin=protoc-gen-go="$work/bin/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$work/bin/protoc-gen-go-grpc" \
	--plugin=protoc-gen-grpc-gateway="$work/bin/protoc-gen-grpc-gateway" \
	--plugin=protoc-gen-openapiv2="$work/bin/protoc-gen-openapiv2" \
	--go_out="$out" --go_opt=paths=source_relative \
	--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
	--grpc-gateway_out="$out" \
	--grpc-gateway_opt=paths=source_relative,omit_package_doc=true,grpc_api_configuration="$GATEWAY_CONFIG" \
	--openapiv2_out="$out" \
	--openapiv2_opt=grpc_api_configuration="$GATEWAY_CONFIG",openapi_configuration="$OPENAPI_CONFIG" \
	"${PROTOS[@]}"

$check || exit 0

# Compare the set of generated files and then their contents.
generated() {
	(cd "$1" && find . -type f \( -name '*.pb.go' -o -name '*.pb.gw.go' -o -name '*.swagger.json' \) | LC_ALL=C sort)
}
status=0
if ! diff -u --label committed --label regenerated <(generated "$src") <(generated "$out"); then
	echo "genproto: the set of generated files under proto/ is stale" >&2
	status=1
fi
while read -r f; do
	if [ -f "$src/$f" ] && ! diff -u --label "proto/${f#./} (committed)" --label "proto/${f#./} (regenerated)" "$src/$f" "$out/$f"; then
		status=1
	fi
done < <(generated "$out")
if [ $status != 0 ]; then
	echo "genproto: generated code is out of date; run 'make proto' and commit the result" >&2
fi
exit $status
