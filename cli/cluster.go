package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/node"
)

// tempel cluster: the members of a replicated calendar, through any
// member's HTTP API (GET /v1/cluster; membership changes go to the
// leader, which the command finds).
func clusterCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: flagServer, Value: defaultServer, EnvVars: []string{"TEMPEL_SERVER"}, Usage: "any member's `ADDR` (HOST:PORT, or https://HOST:PORT)"},
		tlsCAFlag(),
		&ucli.StringFlag{Name: flagUser, EnvVars: []string{"TEMPEL_USER"}, Usage: "`LOGIN` of the cluster administrator (not needed by a development server)"},
		&ucli.StringFlag{Name: flagKey, EnvVars: []string{"TEMPEL_KEY"}, Usage: "`KEY` of --user (prefer TEMPEL_KEY)"},
		&ucli.BoolFlag{Name: "json", Usage: "print the cluster's status as JSON"},
	}
	return &ucli.Command{
		Name:  "cluster",
		Usage: "show and change the members of a replicated calendar",
		Description: "A replicated calendar is started with 'tempel serve --node-id N --cluster 1=ADDR1,2=ADDR2,3=ADDR3'.\n" +
			"status shows members, leader, term, applied second and each member's lag. add and remove\n" +
			"change the members through the leader (found from any member): a member added is started\n" +
			"with 'tempel serve --join' on an empty data directory, receives the log as a learner and\n" +
			"votes once it has caught up. To repair a member whose data was lost: remove it, add it\n" +
			"again with the same id, and start it with --join.",
		Subcommands: []*ucli.Command{
			{Name: "status", Usage: "show the members, the leader, the term and each member's lag", Flags: flags, Action: clusterStatus},
			{Name: "add", Usage: "add member ID at ADDR (its --listen address) as a learner", ArgsUsage: "ID ADDR", Flags: flags, Action: clusterAdd},
			{Name: "remove", Usage: "remove member ID", ArgsUsage: "ID", Flags: flags, Action: clusterRemove},
		},
	}
}

// clusterView is GET /v1/cluster, as the server writes it.
type clusterView = node.ClusterStatus

type clusterClient struct {
	hc         *http.Client
	login, key string
}

func newClusterClient(c *ucli.Context) (*clusterClient, error) {
	hc, err := httpClient(c.StringSlice(flagTLSCA), 15*time.Second)
	if err != nil {
		return nil, err
	}
	return &clusterClient{hc: hc, login: c.String(flagUser), key: c.String(flagKey)}, nil
}

// do sends one request and decodes a cluster view from a 200 answer.
func (cc *clusterClient) do(method, url string, body []byte) (*clusterView, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return nil, inputErrorf("%v", err)
	}
	if cc.login != "" {
		req.SetBasicAuth(cc.login, cc.key)
	}
	resp, err := cc.hc.Do(req)
	if err != nil {
		return nil, &exitError{code: ExitError, err: fmt.Errorf("cannot reach %s: %v", url, err)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, inputErrorf("%s is not a member of a replicated calendar (started without --cluster)", url)
	case resp.StatusCode != http.StatusOK:
		return nil, inputErrorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var v clusterView
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, inputErrorf("%s: not a cluster status: %v", url, err)
	}
	return &v, nil
}

// memberStatus asks --server for its view of the cluster.
func memberStatus(c *ucli.Context) (*clusterClient, *clusterView, error) {
	cc, err := newClusterClient(c)
	if err != nil {
		return nil, nil, err
	}
	v, err := cc.do(http.MethodGet, baseURL(c.String(flagServer))+"/v1/cluster", nil)
	return cc, v, err
}

func clusterStatus(c *ucli.Context) error {
	cc, v, err := memberStatus(c)
	if err != nil {
		return err
	}
	if !v.IsLeader && v.LeaderAddr != "" {
		// The leader knows every member's progress.
		if lv, err := cc.do(http.MethodGet, leaderURL(c, v)+"/v1/cluster", nil); err == nil {
			v = lv
		}
	}
	return printCluster(c, v)
}

// leaderURL is the leader's base URL, with the scheme of --server.
func leaderURL(c *ucli.Context, v *clusterView) string {
	scheme := "http://"
	if strings.HasPrefix(baseURL(c.String(flagServer)), "https://") {
		scheme = "https://"
	}
	return scheme + v.LeaderAddr
}

func printCluster(c *ucli.Context, v *clusterView) error {
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	leader := "none (election in progress, or no quorum)"
	if v.Leader != 0 {
		leader = fmt.Sprintf("member %d at %s", v.Leader, v.LeaderAddr)
	}
	fmt.Fprintf(w, "leader:          %s\n", leader)
	fmt.Fprintf(w, "term:            %d\n", v.Term)
	fmt.Fprintf(w, "commit index:    %d (applied %d by member %d, up to second %d)\n", v.Commit, v.Applied, v.ID, v.AppliedSecond)
	if len(v.Members) == 0 {
		return nil
	}
	fmt.Fprintf(w, "%-4s %-24s %-8s %-10s %-8s %s\n", "ID", "ADDRESS", "ROLE", "MATCH", "LAG", "STATE")
	for _, m := range v.Members {
		role := "voter"
		if m.Learner {
			role = "learner"
		}
		state := strings.TrimPrefix(m.State, "State")
		if !m.Active {
			state += ", not heard from"
		}
		fmt.Fprintf(w, "%-4d %-24s %-8s %-10d %-8d %s\n", m.ID, m.Addr, role, m.Match, m.Lag, state)
	}
	return nil
}

// toLeader finds the leader through --server and sends it the change.
func toLeader(c *ucli.Context, method, path string, body []byte) error {
	cc, v, err := memberStatus(c)
	if err != nil {
		return err
	}
	if v.Leader == 0 {
		return &exitError{code: ExitError, err: fmt.Errorf("the cluster has no leader now (election in progress, or no quorum): try again")}
	}
	url := baseURL(c.String(flagServer))
	if !v.IsLeader {
		if v.LeaderAddr == "" {
			return &exitError{code: ExitError, err: fmt.Errorf("member %d leads but %s does not know its address: send the change to it directly", v.Leader, c.String(flagServer))}
		}
		url = leaderURL(c, v)
	}
	nv, err := cc.do(method, url+path, body)
	if err != nil {
		return err
	}
	return printCluster(c, nv)
}

func memberID(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usageErrorf("member id %q: want a number from 1", s)
	}
	return id, nil
}

func clusterAdd(c *ucli.Context) error {
	if c.NArg() != 2 {
		return usageErrorf("usage: tempel cluster add ID ADDR")
	}
	id, err := memberID(c.Args().Get(0))
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"id": id, "addr": c.Args().Get(1)})
	return toLeader(c, http.MethodPost, "/v1/cluster/members", body)
}

func clusterRemove(c *ucli.Context) error {
	if c.NArg() != 1 {
		return usageErrorf("usage: tempel cluster remove ID")
	}
	id, err := memberID(c.Args().Get(0))
	if err != nil {
		return err
	}
	return toLeader(c, http.MethodDelete, fmt.Sprintf("/v1/cluster/members/%d", id), nil)
}
