// Package client is the Go SDK for Tempel: what an e-government gateway
// embeds to have document hashes signed, signatures extended to
// publications and the publications file fetched, over Tempel's gRPC API
// (docs/design/architecture.md#data-flow, #interfaces).
//
// A document never leaves its owner: only its hash ([ksi.Imprint]) is sent.
// Every call takes a context and returns parsed [ksi.Signature] values
// whose bytes are exactly those of a .ksig file.
//
// # Connecting
//
// [New] takes a [Config] with one or more endpoints. A unary call goes to
// all of them at once (or to [Config].Parallel of them, starting with the
// one that answered last); the first answer
// that passes the client's checks wins and the others are cancelled, so a
// hung, failing or lying endpoint costs nothing while another answers.
// Unavailable, overloaded or timed-out attempts are retried with backoff
// and jitter ([Config].Retries); refusals never are. When every endpoint
// fails, an [EndpointsError] names each one's failure. A [Stream] uses
// one endpoint: the one that answered last, or the next that opens.
// Credentials are sent as gRPC metadata
// ("authorization: Basic ..." and "x-tempel-machine-id"); the key is
// never logged or printed. An endpoint "https://HOST:PORT" is reached over
// TLS, trusting the system roots or [Config.TLS].RootCAs; "HOST:PORT" and
// "http://HOST:PORT" are plaintext, which suits loopback and development
// only, since the key travels with every call:
//
//	client.Config{Endpoints: []string{"https://tempel.example.ee:443"},
//		TLS: &tls.Config{RootCAs: pool}}
//
// # Signing
//
//   - [Client.Sign] and [Client.SignLevel]: one hash, one request.
//   - [Client.SignMany]: local aggregation. The hashes become the leaves
//     of a local hash tree; only its root is sent, and each hash gets its
//     own signature by prepending its path in the local tree to the
//     server's signature of the root. A thousand documents cost one round
//     trip and one server-side leaf; a batch too high for the maximum
//     level is split into concurrent requests. Each leaf is blinded with a
//     mask from a random per-batch seed, as the reference block signers
//     do, so no signature shows another document's hash
//     (docs/design/masking.md). [Client.SignManyWith] takes options
//     ([SignManyOptions]: NoMask, PreviousLeaf, MaxLevel);
//     [Client.SignManyEncoded] returns the encoded signatures, for a
//     million at a time.
//   - [Client.Stream]: one bidirectional stream for high request rates
//     (SignBatchStream in the shared-round form: requests go in batches,
//     and each signature is joined from its own part and its round's).
//     [Stream.Sign] may be called from many goroutines at once;
//     [Stream.Submit] is its non-blocking form for load generators, with a
//     bound on outstanding requests ([Config.MaxOutstanding]).
//
// Signatures returned by Sign, SignMany and Stream.Sign have passed the
// internal verification policy against the hash they were asked for.

// # RFC 3161 tokens
//
// [Client.TimeStamp] posts a DER TimeStampReq ([tsp.NewRequest]) to the
// endpoints' time-stamping front door (POST /tsa) with the same
// credentials, TLS, failover and retries, and returns the TimeStampResp
// once its token answers the request and its embedded KSI signature
// verifies internally ([CheckToken]).
//
// # Extending
//
// A fresh signature is proved by the calendar's key; once the calendar
// root of a later second has been published, [Client.Extend] turns it into
// a publication-based signature that needs no key and no server. The
// extender's calendar chain is checked against the signature and the
// publication before it is used (see [ChainMismatchError]).
// [CalendarExtender] lets the verifier's calendar-based policy use the
// client.
//
// # Errors
//
// Failures callers branch on wrap one of [ErrUnauthenticated],
// [ErrOverloaded], [ErrUnavailable], [ErrInvalid], [ErrOutOfRange],
// [ErrBadResponse] or [ErrClosed]; test them with [errors.Is]. The server's
// message is kept in the error text.
package client
