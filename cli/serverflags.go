package cli

import (
	"context"
	"errors"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/client"
)

// Flags shared by the commands that talk to a Tempel server (sign, extend,
// pubfile, verify).
const (
	flagServer    = "server"
	flagUser      = "user"
	flagKey       = "key"
	flagMachineID = "machine-id"
	flagTimeout   = "timeout"
)

// serverFlags are the flags naming a Tempel server and the credentials to
// use there. withDefault gives --server the address `tempel serve` uses;
// verify passes false, because there a server is an explicit choice (it
// turns on the calendar policy and extending).
func serverFlags(withDefault bool) []ucli.Flag {
	server := &ucli.StringSliceFlag{
		Name:    flagServer,
		EnvVars: []string{"TEMPEL_SERVER"},
		Usage:   "Tempel server `ADDR`: https://HOST:PORT (TLS), HOST:PORT or http://HOST:PORT (plaintext); repeat or separate with commas for high availability (each call goes to all, the first valid answer wins)",
	}
	if withDefault {
		server.Value = ucli.NewStringSlice(defaultServer)
	}
	return []ucli.Flag{
		server,
		tlsCAFlag(),
		&ucli.StringFlag{Name: flagUser, EnvVars: []string{"TEMPEL_USER"}, Usage: "`LOGIN` at the server (not needed by a development server)"},
		// The key is better passed in the environment: a command line is
		// visible to every user of the machine (ps).
		&ucli.StringFlag{Name: flagKey, EnvVars: []string{"TEMPEL_KEY"}, Usage: "`KEY` of --user (prefer TEMPEL_KEY: command lines are visible in ps)"},
		&ucli.StringFlag{Name: flagMachineID, EnvVars: []string{"TEMPEL_MACHINE_ID"}, Usage: "`NAME` of this machine, recorded in the signature's metadata"},
		&ucli.DurationFlag{Name: flagTimeout, Value: client.DefaultTimeout, Usage: "`DURATION` bound for one call to one server (signing waits for the next calendar second)"},
	}
}

// serverOptions are the values of [serverFlags].
type serverOptions struct {
	endpoints []string
	login     string
	key       string
	machineID string
	timeout   time.Duration
	tlsCAs    []string
}

func serverOptionsFrom(c *ucli.Context) (serverOptions, error) {
	s := serverOptions{
		login:     c.String(flagUser),
		key:       c.String(flagKey),
		machineID: c.String(flagMachineID),
		timeout:   c.Duration(flagTimeout),
		tlsCAs:    c.StringSlice(flagTLSCA),
	}
	for _, a := range serverList(c) {
		if _, _, err := client.ParseEndpoint(a); err != nil {
			return s, usageErrorf("--%s: %s", flagServer, strings.TrimPrefix(err.Error(), "client: "))
		}
		s.endpoints = append(s.endpoints, a)
	}
	if s.key != "" && s.login == "" {
		return s, usageErrorf("--%s (TEMPEL_KEY) is the key of a user: add --%s LOGIN (TEMPEL_USER)", flagKey, flagUser)
	}
	if s.timeout <= 0 {
		return s, usageErrorf("--%s %s: must be positive", flagTimeout, s.timeout)
	}
	return s, nil
}

// serverList is the addresses of --server. The app disables urfave's own
// comma splitting (constraints contain commas), so addresses are split
// here: --server a,b and TEMPEL_SERVER=a,b both name two servers.
func serverList(c *ucli.Context) []string {
	var list []string
	for _, v := range c.StringSlice(flagServer) {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a != "" {
				list = append(list, a)
			}
		}
	}
	return list
}

// dial makes a client; it connects lazily, so a server that is down is
// only noticed (and reported by [serverError]) at the first call.
func (s serverOptions) dial() (*client.Client, error) {
	tc, err := tlsConfigFrom(s.tlsCAs)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(client.Config{
		TLS:       tc,
		Endpoints: s.endpoints,
		Login:     s.login,
		Key:       s.key,
		MachineID: s.machineID,
		Timeout:   s.timeout,
	})
	if err != nil {
		return nil, inputErrorf("%s", strings.TrimPrefix(err.Error(), "client: "))
	}
	return cl, nil
}

// unreachable tells, from an unavailable call's message, that no server
// answered (nothing listening, no route, the connection lost), rather than
// a server that answered that it cannot sign now (not ready: no leader, a
// clock out of bound, a calendar stopped), which names its reason.
func unreachable(detail string) bool {
	for _, s := range []string{"connection error", "connection refused", "dial ", "no such host", "i/o timeout",
		"connection reset", "network is unreachable", "EOF", "server preface", "deadline exceeded", "context deadline"} {
		if strings.Contains(detail, s) {
			return true
		}
	}
	return false
}

// serverError turns a client error into one line that says what to do
// about it. The client's messages name the endpoint but not the remedy.
func (s serverOptions) serverError(err error) error {
	detail := strings.TrimPrefix(err.Error(), "client: ")
	where := strings.Join(s.endpoints, ", ")
	switch {
	case errors.Is(err, client.ErrUnavailable) && strings.Contains(detail, "x509: "):
		return inputErrorf("the server at %s presented a certificate this client does not trust: give its CA with --%s FILE (TEMPEL_TLS_CA; a development server's is DATA-DIR/keys/root.pem) [%s]",
			where, flagTLSCA, detail)
	case errors.Is(err, client.ErrUnavailable) && strings.Contains(detail, "server preface") && !strings.Contains(where, "https://"):
		return inputErrorf("the server at %s closed the connection before answering in plaintext: if it serves TLS, name it https://HOST:PORT (else it may be refusing connections) [%s]", where, detail)
	case errors.Is(err, client.ErrUnavailable) && !unreachable(detail):
		return inputErrorf("the server at %s is running but does not sign now (see its /readyz) [%s]", where, detail)
	case errors.Is(err, client.ErrUnavailable):
		return inputErrorf("cannot reach a Tempel server at %s: is it running? Start one with 'tempel serve', or point --%s (TEMPEL_SERVER) at one [%s]",
			where, flagServer, detail)
	case errors.Is(err, client.ErrUnauthenticated):
		return inputErrorf("the server at %s refused the credentials: check --%s and --%s (TEMPEL_USER, TEMPEL_KEY) [%s]",
			where, flagUser, flagKey, detail)
	case errors.Is(err, client.ErrOverloaded):
		return inputErrorf("the server at %s is overloaded: try again later [%s]", where, detail)
	case errors.Is(err, context.DeadlineExceeded):
		return inputErrorf("the server at %s did not answer within --%s %s [%s]", where, flagTimeout, s.timeout, detail)
	}
	return inputErrorf("%s", detail)
}
