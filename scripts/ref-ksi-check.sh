#!/usr/bin/env bash
# ref-ksi-check.sh TEMPEL [KSI]
#
# Runs the reference KSI tool (ksi-tool 2.10 on libksi 3.21; KSI defaults to
# `ksi` on PATH) against a freshly started TEMPEL serve, over HTTP, ksi+tcp
# and HTTPS, and prints one line per check with its exit status. The tool is
# not a Debian package and CI cannot reach its sources, so this check is run
# by hand (build libparamset, libksi and ksi-tool from their sources with
# autotools, libssl-dev and libcurl4-openssl-dev); the automated tests apply
# the reference SDKs' own rules instead (docs/design/formats.md).
#
# HTTPS needs the development root in the system's trust store (libksi uses
# libcurl's default CA bundle): the script adds it for the HTTPS checks and
# removes it afterwards, so it must run as root; set SKIP_HTTPS=1 otherwise.
set -u
tempel=$(realpath "$1"); ksi=${2:-ksi}
dir=$(mktemp -d /tmp/tempel-refksi.XXXX)
cd "$dir"
port=18320; tcp=18321; tlsport=18322
"$tempel" serve --data-dir data --listen 127.0.0.1:$port --ksi-tcp-listen 127.0.0.1:$tcp --publish-every 2s >serve.out 2>serve.err &
pid=$!
trap 'kill -INT $pid ${tlspid:-} 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.1; done

fails=0
check() { # check NAME COMMAND...
  local name=$1; shift
  "$@" >"out/${name//[\/ ]/_}.out" 2>&1; local rc=$?
  printf '%-44s rc=%d\n' "$name" $rc
  [ $rc -eq 0 ] || fails=$((fails + 1))
}
S=http://127.0.0.1:$port/gt-signingservice; X=http://127.0.0.1:$port/gt-extendingservice
A=(--aggr-user anon --aggr-key anon); E=(--ext-user anon --ext-key anon)
P=(-P http://127.0.0.1:$port/publications.bin -V data/keys/root.pem --cnstr E=publications@tempel.test)
for i in 1 2 3 4 5; do echo "document $i" >d$i.txt; done
mkdir -p masked local bulk out
for i in $(seq 1 20); do echo "record $i" >bulk/r$i.txt; done

check sign-http "$ksi" sign -S $S "${A[@]}" -i d1.txt -o d1.ksig
check sign-max-lvl-4-mask-5-files "$ksi" sign -S $S "${A[@]}" --max-lvl 4 --mask -o masked d1.txt d2.txt d3.txt d4.txt d5.txt
check sign-max-lvl-8-3-files "$ksi" sign -S $S "${A[@]}" --max-lvl 8 -o local d1.txt d2.txt d3.txt
check sign-mdata "$ksi" sign -S $S "${A[@]}" --max-lvl 1 --mdata --mdata-cli-id citizen -i d2.txt -o d2-mdata.ksig
check sign-sha-512 "$ksi" sign -S $S "${A[@]}" -H SHA-512 -i d3.txt -o d3-sha512.ksig
check sign-sha3-256 "$ksi" sign -S $S "${A[@]}" -H SHA3-256 -i d3.txt -o d3-sha3.ksig
check sign-apply-remote-conf "$ksi" sign -S $S "${A[@]}" --apply-remote-conf -i d4.txt -o d4-conf.ksig
check sign-ksi+tcp "$ksi" sign -S ksi+tcp://anon:anon@127.0.0.1:$tcp -i d5.txt -o d5-tcp.ksig
check tempel-sign-r-masked "$tempel" sign --server 127.0.0.1:$port -r bulk
check tempel-sign-sha-512 "$tempel" sign --server 127.0.0.1:$port -H SHA-512 -o d4-tempel-sha512.ksig d4.txt
for f in d1.ksig:d1.txt masked/d1.txt.ksig:d1.txt masked/d5.txt.ksig:d5.txt local/d2.txt.ksig:d2.txt \
  d2-mdata.ksig:d2.txt d3-sha512.ksig:d3.txt d3-sha3.ksig:d3.txt d4-conf.ksig:d4.txt d5-tcp.ksig:d5.txt \
  bulk/r1.txt.ksig:bulk/r1.txt bulk/r20.txt.ksig:bulk/r20.txt d4-tempel-sha512.ksig:d4.txt; do
  sig=${f%%:*}; doc=${f##*:}
  check "ksi-verify-key $sig" "$ksi" verify --ver-key -i "$sig" -f "$doc" "${P[@]}"
  check "tempel-verify $sig" "$tempel" verify --pubfile http://127.0.0.1:$port/publications.bin \
    --trust-root data/keys/root.pem --cnstr E=publications@tempel.test --sig "$sig" "$doc"
done
# A publication every 2 s: wait for one after the signatures, then extend.
sleep 3
check extend-http "$ksi" extend -i d1.ksig -o d1-ext.ksig -X $X "${E[@]}" "${P[@]}"
check extend-ksi+tcp "$ksi" extend -i masked/d5.txt.ksig -o d5-ext.ksig -X ksi+tcp://anon:anon@127.0.0.1:$tcp "${P[@]}"
check verify-pub-extended "$ksi" verify --ver-pub -i d1-ext.ksig -f d1.txt "${P[@]}"
check verify-pub-extended-tcp "$ksi" verify --ver-pub -i d5-ext.ksig -f d5.txt "${P[@]}"
check verify-cal-ksi+tcp "$ksi" verify --ver-cal -i d2-mdata.ksig -f d2.txt -X ksi+tcp://anon:anon@127.0.0.1:$tcp

if [ -z "${SKIP_HTTPS:-}" ]; then
  mkdir tls
  "$tempel" serve --data-dir tls/data --listen 127.0.0.1:$tlsport --tls >tls/serve.out 2>tls/serve.err &
  tlspid=$!
  for _ in $(seq 1 100); do curl -fs --cacert tls/data/keys/root.pem https://127.0.0.1:$tlsport/readyz >/dev/null && break; sleep 0.1; done
  cp tls/data/keys/root.pem /usr/local/share/ca-certificates/tempel-refksi-check.crt && update-ca-certificates >/dev/null 2>&1
  check sign-https "$ksi" sign -S https://localhost:$tlsport/gt-signingservice "${A[@]}" -i d1.txt -o d1-https.ksig
  check verify-key-https-pubfile "$ksi" verify --ver-key -i d1-https.ksig -f d1.txt -P https://localhost:$tlsport/publications.bin \
    -V tls/data/keys/root.pem --cnstr E=publications@tempel.test
  rm -f /usr/local/share/ca-certificates/tempel-refksi-check.crt && update-ca-certificates --fresh >/dev/null 2>&1
fi
echo "failed: $fails (outputs in $dir)"
[ $fails -eq 0 ]
