package node

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

// registerReflection adds gRPC server reflection (v1 and v1alpha) when
// Config.GRPCReflection asks for it. Reflection is not in the access table's public
// services, so the interceptors and the tap ask for credentials as for
// signing: it tells a caller which services and methods exist, which is
// for the operators and the users, not the world.
func (n *Node) registerReflection(g *grpc.Server) {
	if n.cfg.GRPCReflection {
		reflection.Register(g)
	}
}
