"""Ask a TSA for a token with python3-rfc3161ng and check it.

usage: rfc3161ng_client.py URL TSA_CERT_PEM DOCUMENT OUT_TOKEN

The token for DOCUMENT (SHA-256, with a nonce and the TSA certificate)
is checked by rfc3161ng against the TSA certificate, the document and
the nonce, then refused for a changed document; it is written to
OUT_TOKEN (DER).
"""
import secrets
import sys

import rfc3161ng


def main():
    url, cert_path, doc_path, out_path = sys.argv[1:5]
    with open(cert_path, "rb") as f:
        cert = f.read()
    with open(doc_path, "rb") as f:
        data = f.read()
    nonce = secrets.randbits(63)
    stamper = rfc3161ng.RemoteTimestamper(url, certificate=cert, hashname="sha256", include_tsa_certificate=True)
    # With a certificate, timestamp() checks the token before returning it.
    token = stamper.timestamp(data=data, nonce=nonce)
    rfc3161ng.check_timestamp(token, certificate=cert, data=data, hashname="sha256", nonce=nonce)
    try:
        rfc3161ng.check_timestamp(token, certificate=cert, data=data + b".", hashname="sha256")
    except ValueError:
        pass
    else:
        sys.exit("rfc3161ng accepted the token for a changed document")
    print("genTime", rfc3161ng.get_timestamp(token).isoformat())
    with open(out_path, "wb") as f:
        f.write(token)


if __name__ == "__main__":
    main()
