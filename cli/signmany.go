package cli

import (
	"context"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
)

// signMany is the CLI's one call into the SDK's bulk signing, so that the
// SDK call with masks and requests split by the server's maximum level
// (client.SignManyWith) replaces it in one line:
//
//	return cl.SignManyWith(ctx, hashes, client.SignManyOptions{NoMask: noMask})
//
// Until then every hash goes into one request, unmasked.
func signMany(ctx context.Context, cl *client.Client, hashes []ksi.Imprint, noMask bool) ([]*ksi.Signature, error) {
	_ = noMask
	return cl.SignMany(ctx, hashes)
}
