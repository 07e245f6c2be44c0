// Ask a TSA for a token with pkijs and check it.
//
// usage: node pkijs_client.mjs URL ROOT_PEM DOCUMENT OUT_RESPONSE
//
// The request carries a SHA-256 imprint of DOCUMENT, certReq and a
// negative nonce (pkijs encodes the bytes it is given as they are); the
// response must echo the nonce byte for byte, its imprint must match the
// document and not a changed one, and its signature must verify with a
// certificate chain to ROOT_PEM (and not without it). The response is
// written to OUT_RESPONSE (DER).
import { readFileSync, writeFileSync } from "node:fs";
import { webcrypto } from "node:crypto";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";

const [url, rootPath, docPath, outPath] = process.argv.slice(2);

function fail(msg) {
  console.error(msg);
  process.exit(1);
}

function pemToDER(pem) {
  const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return new Uint8Array(Buffer.from(b64, "base64"));
}

const doc = readFileSync(docPath);
const digest = new Uint8Array(await webcrypto.subtle.digest("SHA-256", doc));
const nonce = webcrypto.getRandomValues(new Uint8Array(8));
nonce[0] |= 0x80; // negative as a DER INTEGER

const req = new pkijs.TimeStampReq({
  version: 1,
  messageImprint: new pkijs.MessageImprint({
    hashAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: pkijs.id_sha256 }),
    hashedMessage: new asn1js.OctetString({ valueHex: digest }),
  }),
  nonce: new asn1js.Integer({ valueHex: nonce }),
  certReq: true,
});
const res = await fetch(url, {
  method: "POST",
  headers: { "Content-Type": "application/timestamp-query" },
  body: req.toSchema().toBER(),
});
if (!res.ok) fail(`POST ${url}: ${res.status}`);
const body = new Uint8Array(await res.arrayBuffer());
const resp = pkijs.TimeStampResp.fromBER(body);
if (resp.status.status !== pkijs.PKIStatus.granted) fail(`status ${resp.status.status}`);

const signed = new pkijs.SignedData({ schema: resp.timeStampToken.content });
const tstInfo = pkijs.TSTInfo.fromBER(signed.encapContentInfo.eContent.valueBlock.valueHexView);
const echoed = tstInfo.nonce ? Buffer.from(tstInfo.nonce.valueBlock.valueHexView) : null;
if (!echoed || !echoed.equals(Buffer.from(nonce))) fail(`nonce ${Buffer.from(nonce).toString("hex")} came back as ${echoed && echoed.toString("hex")}`);
if (!(await tstInfo.verify({ data: doc }))) fail("the message imprint is not the document's");
if (await tstInfo.verify({ data: Buffer.concat([doc, Buffer.from(".")]) })) fail("the message imprint matches a changed document");

const root = pkijs.Certificate.fromBER(pemToDER(readFileSync(rootPath, "utf8")));
// For a TSTInfo, pkijs checks the imprint against the data too.
const data = new Uint8Array(doc).buffer;
const ok = await resp.verify({ signer: 0, data, trustedCerts: [root], checkChain: true, extendedMode: true });
if (!ok.signatureVerified || !ok.signerCertificateVerified) fail(`verify: ${JSON.stringify(ok)}`);
let untrusted;
try {
  untrusted = await resp.verify({ signer: 0, data, trustedCerts: [], checkChain: true, extendedMode: true });
} catch (e) {
  untrusted = { signerCertificateVerified: false };
  console.error(`without the root: ${e.message}`);
}
if (untrusted.signerCertificateVerified) fail("the chain verified without the root");

writeFileSync(outPath, body);
console.log(`genTime ${tstInfo.genTime.toISOString()} nonce ${Buffer.from(nonce).toString("hex")}`);
