package tempelv1

import _ "embed"

// OpenAPI is the OpenAPI v2 document of the HTTP/JSON routes
// (tempel.swagger.json, generated with the code), for servers that
// publish their API description.
//
//go:embed tempel.swagger.json
var OpenAPI []byte
