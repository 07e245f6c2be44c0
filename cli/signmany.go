package cli

import (
	"context"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
)

// signMany is the CLI's one call into the SDK's bulk signing: every leaf
// blinded by a mask unless noMask, as few requests as the server's
// maximum level allows.
func signMany(ctx context.Context, cl *client.Client, hashes []ksi.Imprint, noMask bool) ([]*ksi.Signature, error) {
	return cl.SignManyWith(ctx, hashes, client.SignManyOptions{NoMask: noMask})
}
