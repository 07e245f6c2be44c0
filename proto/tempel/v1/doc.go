// Package tempelv1 holds Tempel's gRPC API, tempel.v1, and its HTTP/JSON
// mapping. Everything here except this file, openapi.go and api_test.go is generated
// from tempel.proto; do not edit it by hand.
//
// # Services
//
//   - Signer: Sign (unary) and SignStream (bidirectional) return the KSI
//     signature (TLV 0x800, as in a .ksig file) of an imprint. Every level
//     of an aggregation hierarchy offers the same service. On the stream a
//     failed request is answered with a SignResponse whose Status holds the
//     KSI status code; the unary call fails with a gRPC status instead.
//   - Extender: Extend returns a calendar hash chain (TLV 0x802);
//     GetCalendarHead describes the calendar's range and root.
//   - Publications: GetPublicationsFile returns the signed publications
//     file; ListPublications lists the published calendar roots.
//
// KSI data crosses the API as opaque bytes in its standard encoding, so
// these types stay at the API edge: servers convert them to and from the
// types of package ksi and never pass them deeper.
//
// # Serving
//
// A server implements [SignerServer], [ExtenderServer] and
// [PublicationsServer] (embedding the matching Unimplemented type by
// value) and registers them with [RegisterSignerServer],
// [RegisterExtenderServer] and [RegisterPublicationsServer]. The HTTP/JSON
// routes, declared in tempel_gateway.yaml, are served by a grpc-gateway
// [runtime.ServeMux] filled either in process with
// [RegisterSignerHandlerServer] and its siblings, or through a gRPC
// connection with [RegisterSignerHandlerFromEndpoint] and its siblings:
//
//	POST /v1/sign           Signer.Sign          (body: SignRequest)
//	POST /v1/extend         Extender.Extend      (body: ExtendRequest)
//	GET  /v1/calendar/head  Extender.GetCalendarHead
//	GET  /v1/publications   Publications.ListPublications (?sinceTime=)
//
// SignStream and GetPublicationsFile are gRPC only. tempel.swagger.json is
// the OpenAPI v2 document of these routes.
//
// # Regenerating
//
// Run `make proto` (scripts/genproto.sh) after editing tempel.proto or one
// of its YAML files, and commit the result; `make proto-check` fails when
// the committed code is stale. The script pins protoc 3.21.12 and takes the
// plugin versions from the tool lines of go.mod.
//
// [runtime.ServeMux]: https://pkg.go.dev/github.com/grpc-ecosystem/grpc-gateway/v2/runtime#ServeMux
package tempelv1
