package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Membership changes of a replicated calendar, on its leader:
//
//	POST   /v1/cluster/members       {"id": N, "addr": "HOST:PORT"}  add N as a learner
//	DELETE /v1/cluster/members/{id}                                   remove N
//
// A member added is started with `tempel serve --join` on an empty data
// directory; it receives the log (or a snapshot) as a learner, which
// does not vote, and the leader promotes it to a voter once it has
// caught up (promoteLearners). Only the cluster administrator
// (Config.ClusterAdmin; anyone in development mode) may change members.

// DefaultClusterAdmin is the login allowed to change members.
const DefaultClusterAdmin = "admin"

// membershipTimeout bounds one change: raft applies one at a time.
const membershipTimeout = 10 * time.Second

func (n *Node) membershipRoutes() []route {
	return []route{
		{"POST /v1/cluster/members", http.HandlerFunc(n.serveAddMember)},
		{"DELETE /v1/cluster/members/{id}", http.HandlerFunc(n.serveRemoveMember)},
	}
}

// mayChangeMembers refuses anyone but the cluster administrator.
func (n *Node) mayChangeMembers(w http.ResponseWriter, r *http.Request) bool {
	if n.users.Dev() {
		return true
	}
	admin := n.cfg.ClusterAdmin
	if admin == "" {
		admin = DefaultClusterAdmin
	}
	if login := identityOf(r.Context()).login; login != admin {
		n.log.Warn("membership change refused", "login", login, "remote", r.RemoteAddr)
		http.Error(w, fmt.Sprintf("cluster: only %q may change the cluster's members", admin), http.StatusForbidden)
		return false
	}
	return true
}

// onLeader refuses a change on a follower, naming the leader.
func (n *Node) onLeader(w http.ResponseWriter) bool {
	st := n.raft.Status()
	if st.IsLeader {
		return true
	}
	w.Header().Set("X-Tempel-Leader", st.LeaderAddr)
	http.Error(w, fmt.Sprintf("cluster: not the leader; send membership changes to the leader (member %d at %s)", st.Leader, st.LeaderAddr), http.StatusMisdirectedRequest)
	return false
}

type memberRequest struct {
	ID   uint64 `json:"id"`
	Addr string `json:"addr"`
}

func (n *Node) serveAddMember(w http.ResponseWriter, r *http.Request) {
	if !n.mayChangeMembers(w, r) || !n.onLeader(w) {
		return
	}
	var req memberRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || req.ID == 0 || req.Addr == "" {
		http.Error(w, `cluster: want {"id": N, "addr": "HOST:PORT"} with N from 1`, http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeout)
	defer cancel()
	if err := n.raft.AddMember(ctx, req.ID, req.Addr); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	n.log.Info("member added as a learner; start it with --join", "id", req.ID, "addr", req.Addr, "by", identityOf(r.Context()).login)
	n.serveCluster(w, r)
}

func (n *Node) serveRemoveMember(w http.ResponseWriter, r *http.Request) {
	if !n.mayChangeMembers(w, r) || !n.onLeader(w) {
		return
	}
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		http.Error(w, "cluster: member id must be a number from 1", http.StatusBadRequest)
		return
	}
	if id == n.cfg.NodeID {
		http.Error(w, "cluster: the leader does not remove itself; stop it, let another lead, and remove it there", http.StatusConflict)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), membershipTimeout)
	defer cancel()
	if err := n.raft.RemoveMember(ctx, id); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	n.log.Info("member removed", "id", id, "by", identityOf(r.Context()).login)
	n.serveCluster(w, r)
}

// promoteLearners makes caught-up learners voters, on the leader, once a
// second: a learner is caught up when it holds everything committed.
func (n *Node) promoteLearners(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := n.raft.Status()
		if !st.IsLeader {
			continue
		}
		for id, m := range st.Members {
			if !m.Learner || !m.RecentActive || m.Match < st.Commit {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, membershipTimeout)
			err := n.raft.PromoteMember(pctx, id)
			cancel()
			if err != nil && !errors.Is(err, context.Canceled) {
				n.log.Warn("promoting a caught-up learner failed; trying again", "id", id, "err", err)
				continue
			}
			n.log.Info("learner caught up; now a voting member", "id", id)
		}
	}
}
