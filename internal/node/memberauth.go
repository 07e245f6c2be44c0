package node

import (
	"context"
	"encoding/base64"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/internal/raftnode"
)

// Members of a replicated calendar authenticate to each other the way
// every caller does (one authentication path): Basic credentials of the
// member login (Config.ClusterLogin, in every member's users file), over
// TLS off loopback. Only that login may send raft traffic; forwarded
// rounds use it too. In development mode (no users file) nothing is sent
// and anyone may, as with every other interface.

// DefaultClusterLogin is the login members use with each other.
const DefaultClusterLogin = "tempel-member"

// memberCreds are the member's credentials on each call to a peer.
type memberCreds struct {
	header string
	tls    bool
}

func (c memberCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": c.header}, nil
}

// RequireTransportSecurity: plaintext is allowed only where the node
// itself serves plaintext, which `tempel serve` permits on loopback only.
func (c memberCreds) RequireTransportSecurity() bool { return c.tls }

// memberDialCreds are the per-call credentials of the member login, or
// none without a key.
func (n *Node) memberDialCreds() []grpc.DialOption {
	if n.cfg.ClusterKey == "" {
		return nil
	}
	login := n.clusterLogin()
	h := "Basic " + base64.StdEncoding.EncodeToString([]byte(login+":"+n.cfg.ClusterKey))
	return []grpc.DialOption{grpc.WithPerRPCCredentials(memberCreds{header: h, tls: n.cfg.TLS.Enabled()})}
}

func (n *Node) clusterLogin() string {
	if n.cfg.ClusterLogin != "" {
		return n.cfg.ClusterLogin
	}
	return DefaultClusterLogin
}

// memberOnly refuses raft traffic from anyone but the member login
// (unless in development mode).
func (n *Node) memberOnly(ctx context.Context, method string) error {
	if !strings.HasPrefix(method, "/"+raftnode.ServiceName+"/") || n.users.Dev() {
		return nil
	}
	if login := identityOf(ctx).login; login != n.clusterLogin() {
		n.log.Warn("raft traffic refused from a login that is not the cluster's member login", "login", login)
		return status.Errorf(codes.PermissionDenied, "cluster: only the member login may send raft traffic")
	}
	return nil
}
