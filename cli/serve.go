package cli

import (
	"bufio"
	"encoding/asn1"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/internal/ntpcheck"
	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/tsp"
)

// serveFlags are the flags of `tempel serve`. Each also reads TEMPEL_<NAME>
// from the environment and NAME from the --config file; a flag on the
// command line wins over the environment, which wins over the file.
func serveFlags() []ucli.Flag {
	env := func(name string) []string {
		return []string{"TEMPEL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
	}
	str := func(name, value, usage string) *ucli.StringFlag {
		return &ucli.StringFlag{Name: name, Value: value, Usage: usage, EnvVars: env(name)}
	}
	dur := func(name string, value time.Duration, usage string) *ucli.DurationFlag {
		return &ucli.DurationFlag{Name: name, Value: value, Usage: usage, EnvVars: env(name)}
	}
	num := func(name string, value int, usage string) *ucli.IntFlag {
		return &ucli.IntFlag{Name: name, Value: value, Usage: usage, EnvVars: env(name)}
	}
	boolean := func(name, usage string) *ucli.BoolFlag {
		return &ucli.BoolFlag{Name: name, Usage: usage, EnvVars: env(name)}
	}
	return append([]ucli.Flag{
		str("config", "", "read settings from `FILE` (lines NAME = VALUE, NAME a flag name; # comments)"),
		str("role", node.RoleAll, "what to run: all (calendar + aggregator), calendar, or aggregator"),
		str("listen", defaultServer, "`ADDR` serving gRPC, REST, KSI PDU v2, the publications file, metrics and health"),
		str("ksi-tcp-listen", "", "`ADDR` serving KSI PDU v2 over raw TCP (ksi+tcp://ADDR: signing and extending, many PDUs per connection; TLS when the server has TLS); empty: off"),
		str("data-dir", defaultDataDir, "`DIR` for the calendar (Pebble) and the development keys"),
		str("watermark", "", "`FILE` where the calendar records what it answered (default DATA-DIR/watermark); on another volume it also catches a data directory restored from an older copy"),
		num("min-free", int(calendar.DefaultMinFreeBytes>>20), "free `MiB` below which the calendar stops appending (and resumes once space is freed)"),
		dur("publish-every", node.DefaultPublishEvery, "publication period, aligned to UTC (e.g. 5s in development, 24h in production)"),
		dur("round", aggregator.DefaultPeriod, "aggregation round length"),
		dur("grace", 0, fmt.Sprintf("how long after a second ends the calendar still takes roots; 0 means %s with --role all (its own rounds reserve their place in the second) and %s with --role calendar (remote aggregators)", node.DefaultGrace(node.RoleAll), node.DefaultGrace(node.RoleCalendar))),
		str("upstream", "", "parent's gRPC `ADDR` (role aggregator): https://HOST:PORT (TLS), HOST:PORT or http://HOST:PORT (plaintext)"),
		str("upstream-tls-ca", "", "CA certificates (PEM `FILE`) trusted for an https:// --upstream (default: the system roots)"),
		str("upstream-tls-cert", "", "client certificate (PEM `FILE`) to present to an https:// --upstream that requires one"),
		str("upstream-tls-key", "", "key of --upstream-tls-cert (PEM `FILE`, mode 0600)"),
		str("upstream-login", "", "login at the parent (default: --name)"),
		str("upstream-key", "", "key at the parent"),
		str("name", node.DefaultName, "this node's client id at its parent"),
		str("users", "", "users `FILE` (LOGIN:KEY per line, mode 0600); without it the server runs in development mode"),
		num("max-level", aggregator.DefaultMaxLevel, "highest level a request may have, advertised to KSI clients as is (ksi sign --apply-remote-conf sizes its local round for 2^N inputs); at most 255 minus the levels of the round tree and upstream"),
		num("quota", 0, "requests one user may send per round (0: no limit)"),
		num("max-queue", aggregator.DefaultMaxQueue, "requests that may wait for a round; more are refused (RESOURCE_EXHAUSTED / 0x106)"),
		num("max-conns", server.DefaultMaxConns, fmt.Sprintf("open client connections; more are refused at once (at most RLIMIT_NOFILE minus a quarter of it, at least %d, kept for the store and files)", server.MinFDReserve)),
		dur("read-timeout", server.DefaultReadTimeout, "time to read an HTTP/1.1 request (headers and body) or a new gRPC connection's handshake; also bounds a new connection's first bytes and TLS handshake (those at most 10s)"),
		dur("write-timeout", server.DefaultWriteTimeout, "time to answer an HTTP/1.1 request, from the end of its headers"),
		dur("idle-timeout", server.DefaultIdleTimeout, "closes HTTP/1.1 and gRPC connections with no request in progress for this long"),
		str("public-url", "", "base URL clients use to reach this server (default http://LISTEN, or https://LISTEN with TLS)"),
		str("max-memory", formatSize(node.DefaultMaxMemory), "memory the server plans for (`SIZE`, e.g. 1792MiB, 4GiB): the Go soft memory limit unless GOMEMLIMIT is set; waiting requests may hold half of it, more are refused at once (RESOURCE_EXHAUSTED / HTTP 429 / 0x106)"),
		dur("stream-send-timeout", node.DefaultStreamSendTimeout, "end a signing stream (RESOURCE_EXHAUSTED) whose client has read no answer for this long"),
		str("root-cert", "", "operator trust root certificate (PEM); with the four below replaces the development PKI"),
		str("publisher-cert", "", "publications file signer certificate (PEM, may include its chain)"),
		str("publisher-key", "", "publications file signer key (PEM, mode 0600, or a pkcs11: URI with --pkcs11-module)"),
		str("calendar-cert", "", "calendar root signer certificate (PEM, RSA)"),
		str("calendar-key", "", "calendar root signer key (PEM, mode 0600, or a pkcs11: URI with --pkcs11-module)"),
		str("member-certs", "", "every member's calendar certificate (PEM `FILE`) of a replicated calendar, for the publications file; with --calendar-cert (a development data directory reads DATA-DIR/keys/members.pem)"),
		str("retired-certs", "", "calendar certificates retired by key rotations (`FILE` as tempel keys rotate writes DATA-DIR/keys/retired-calendar.pem), for the publications file; with --calendar-cert"),
		str("tsa-cert", "", "RFC 3161 TSA certificate (PEM `FILE`, leaf first, chained to the trust root; extended key usage timeStamping, critical) in place of DATA-DIR/keys/tsa.pem"),
		str("tsa-key", "", "key of --tsa-cert (PEM `FILE`, mode 0600; RSA or ECDSA P-256; or a pkcs11: URI with --pkcs11-module)"),
		str("tsa-policy", tsp.DefaultPolicy.String(), "policy `OID`s the TSA serves, comma-separated; the first is given to requests that name none"),
		boolean("tsa-qc-statement", "put the qualified time-stamp statement (qcStatements, esi4-qtstStatement-1, ETSI EN 319 422) in every token: only for a TSA a trusted list makes qualified"),
		&ucli.BoolFlag{Name: "pprof", Usage: "serve /debug/pprof/ (and a copy of /metrics) on --debug-listen, never on --listen", EnvVars: env("pprof")},
		str("debug-listen", node.DefaultDebugListen, "loopback `ADDR` of the debug listener (with --pprof)"),
		boolean("grpc-reflection", "register gRPC server reflection (grpcurl, grpcui can list and call the services); it needs credentials like signing"),
		&ucli.BoolFlag{Name: "pdu-allow-weak-hmac", Usage: "accept KSI PDUs whose HMAC is weaker than SHA-256 (SHA-1, RIPEMD-160, SHA3-224)", EnvVars: env("pdu-allow-weak-hmac")},
		boolean("tls", "serve TLS with the development certificate DATA-DIR/keys/tls.pem (localhost, 127.0.0.1, ::1; clients trust DATA-DIR/keys/root.pem), issued from the development PKI"),
		str("tls-cert", "", "serve TLS with this certificate chain (PEM `FILE`, leaf first)"),
		str("tls-key", "", "key of --tls-cert (PEM `FILE`, mode 0600)"),
		str("tls-client-ca", "", "require client certificates issued by these CAs (PEM `FILE`)"),
		boolean("tls12", "also accept TLS 1.2 clients (default: TLS 1.3 only)"),
		boolean("insecure-listen", "allow plaintext on a non-loopback --listen address (credentials then cross the network in the clear)"),
		str("ntp-server", "", "NTP server (`HOST[:PORT]`, port 123 by default) the calendar's clock is checked against; while the clock is off by more than --max-clock-offset, or unchecked for --ntp-stale, the server does not sign and /readyz says why; empty: off"),
		dur("ntp-interval", ntpcheck.DefaultInterval, "time between two queries of --ntp-server (a failed query is retried within 10s)"),
		dur("max-clock-offset", ntpcheck.DefaultMaxOffset, "the largest offset from --ntp-server the server still signs with"),
		dur("ntp-stale", 0, fmt.Sprintf("with no answer from --ntp-server for this long the clock counts as unchecked and the server does not sign; 0 means %d × --ntp-interval", ntpcheck.DefaultStaleIntervals)),
		str("log-level", "info", "debug, info, warn or error"),
		str("log-format", "text", "text or json"),
	}, append(clusterFlags(env), pkcs11Flags(env)...)...)
}

func serveCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "serve",
		Usage: "run the Tempel service (calendar, aggregator, or both)",
		Description: "Runs Tempel on one address: gRPC and REST signing, extending and publications,\n" +
			"KSI PDU v2 (/gt-signingservice, /gt-extendingservice), RFC 3161 (POST /tsa, with\n" +
			"role all), GET /publications.bin, /metrics, /healthz and /readyz. On first start a development PKI is created under\n" +
			"DATA-DIR/keys; its root.pem is the trust root verifiers pin.\n\n" +
			"TLS: --tls-cert FILE --tls-key FILE (or --tls, the development certificate for\n" +
			"localhost issued from DATA-DIR/keys) serves all of it over TLS 1.3 on the same port.\n" +
			"Without TLS, --listen must be a loopback address unless --insecure-listen is given.\n\n" +
			"--ksi-tcp-listen ADDR also serves KSI PDU v2 over raw TCP (ksi+tcp://ADDR, signing and\n" +
			"extending, many PDUs per connection), over TLS when TLS is on; the same loopback rule applies.\n\n" +
			"Every flag also reads TEMPEL_<FLAG> (e.g. TEMPEL_PUBLISH_EVERY=5s) and --config FILE.\n" +
			"SIGINT or SIGTERM shuts down gracefully: queued requests are answered first.",
		Flags:  serveFlags(),
		Action: serveAction,
	}
}

func serveAction(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("serve takes no arguments, got %q", c.Args().First())
	}
	if err := applyConfigFile(c); err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// Rounds allocate their signatures in bursts that die together;
		// collecting less often trades memory for throughput. GOGC in the
		// environment overrides this.
		debug.SetGCPercent(gcPercent)
	}
	log, err := newLogger(c)
	if err != nil {
		return err
	}
	maxMemory, err := parseSize(c.String("max-memory"))
	if err != nil || maxMemory < 64<<20 {
		return usageErrorf("--max-memory %q: want a size of at least 64MiB, e.g. 1792MiB or 4GiB", c.String("max-memory"))
	}
	cfg := node.Config{
		Role: c.String("role"), DataDir: c.String("data-dir"), Listen: c.String("listen"), Name: c.String("name"),
		WatermarkFile: c.String("watermark"), MinFreeBytes: uint64(max(c.Int("min-free"), 1)) << 20,
		PublishEvery: c.Duration("publish-every"), Grace: c.Duration("grace"), PublicURL: c.String("public-url"),
		Upstream: c.String("upstream"), UpstreamLogin: c.String("upstream-login"), UpstreamKey: c.String("upstream-key"),
		RoundPeriod: c.Duration("round"), MaxLevel: c.Int("max-level"), Quota: c.Int("quota"), MaxQueue: c.Int("max-queue"),
		UsersFile: c.String("users"), Logger: log, Pprof: c.Bool("pprof"),
		DebugListen: c.String("debug-listen"), PDUAllowWeakHMAC: c.Bool("pdu-allow-weak-hmac"),
		TLS: node.TLSConfig{CertFile: c.String("tls-cert"), KeyFile: c.String("tls-key"), Dev: c.Bool("tls"),
			ClientCAFile: c.String("tls-client-ca"), AllowTLS12: c.Bool("tls12"), UpstreamCAFiles: nonEmpty(c.String("upstream-tls-ca")),
			UpstreamCertFile: c.String("upstream-tls-cert"), UpstreamKeyFile: c.String("upstream-tls-key")},
		MaxMemory: maxMemory, StreamSendTimeout: c.Duration("stream-send-timeout"), KSITCPListen: c.String("ksi-tcp-listen"),
		Keys: pki.Files{RootCert: c.String("root-cert"), PublisherCert: c.String("publisher-cert"), PublisherKey: c.String("publisher-key"),
			CalendarCert: c.String("calendar-cert"), CalendarKey: c.String("calendar-key"), MemberCerts: c.String("member-certs")},
	}
	cfg.GRPCReflection = c.Bool("grpc-reflection")
	if err := retiredCertsFlag(c, &cfg); err != nil {
		return err
	}
	closeHSM, err := hsmConfig(c, &cfg)
	if err != nil {
		return err
	}
	defer closeHSM()
	if err := tsaConfig(c, &cfg); err != nil {
		return err
	}
	cfg.MaxConns, cfg.ReadTimeout, cfg.WriteTimeout, cfg.IdleTimeout =
		c.Int("max-conns"), c.Duration("read-timeout"), c.Duration("write-timeout"), c.Duration("idle-timeout")
	if err := checkConnFlags(cfg); err != nil {
		return err
	}
	if err := clusterConfig(c, &cfg); err != nil {
		return err
	}
	if err := clockConfig(c, &cfg); err != nil {
		return err
	}
	if cfg.PublishEvery < time.Second {
		return usageErrorf("--publish-every %s: the period must be at least 1s", cfg.PublishEvery)
	}
	if cfg.StreamSendTimeout <= 0 {
		return usageErrorf("--stream-send-timeout %s: must be positive", cfg.StreamSendTimeout)
	}
	if cfg.MaxLevel < 0 || cfg.MaxLevel > 254 {
		return usageErrorf("--max-level %d: must be 0..254", cfg.MaxLevel)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit makes the collector work harder as the process
		// nears it, rather than let garbage take the room that the
		// request budget (half of it) counts on.
		debug.SetMemoryLimit(maxMemory)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return inputErrorf("listen on %s: %v", cfg.Listen, err)
	}
	if err := checkPlaintextListen(cfg.Listen, ln.Addr(), cfg.TLS.Enabled(), c.Bool("insecure-listen")); err != nil {
		ln.Close()
		return err
	}
	if err := checkKSITCPListen(cfg, c.Bool("insecure-listen")); err != nil {
		ln.Close()
		return err
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = publicURL(ln.Addr(), cfg.TLS.Enabled())
	}
	n, err := node.New(cfg)
	if err != nil {
		ln.Close()
		return inputErrorf("%v", err)
	}
	defer n.Close()
	printBanner(c, cfg, n, ln.Addr().String())
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := n.Run(ctx, ln); err != nil {
		return inputErrorf("%v", err)
	}
	log.Info("stopped")
	return nil
}

// printBanner tells a newcomer where everything is.
func printBanner(c *ucli.Context, cfg node.Config, n *node.Node, addr string) {
	w := c.App.Writer
	fmt.Fprintf(w, "tempel %s listening on %s\n", cfg.Role, addr)
	fmt.Fprintf(w, "  API (gRPC + REST):   %s   e.g. POST %s/v1/sign\n", addr, cfg.PublicURL)
	if k := n.Keys(); k != nil {
		fmt.Fprintf(w, "  publications file:  %s/publications.bin (every %s)\n", cfg.PublicURL, cfg.PublishEvery)
		fmt.Fprintf(w, "  trust root to pin:  %s\n", k.RootPath)
		fmt.Fprintf(w, "  root fingerprint:   SHA-256 %s\n", k.RootFingerprint())
		fmt.Fprintf(w, "  constraint to pin:  --cnstr %s\n", k.Constraint())
		fmt.Fprintf(w, "  KSI PDU v2:         %s/gt-signingservice  %s/gt-extendingservice\n", cfg.PublicURL, cfg.PublicURL)
		if cfg.Role == node.RoleAll && k.TSA != nil {
			fmt.Fprintf(w, "  RFC 3161:           POST %s/tsa   (TSA certificate %s)\n", cfg.PublicURL, formatName(k.TSA.Subject))
		}
	}
	printKSITCPBanner(w, n)
	fmt.Fprintf(w, "  metrics:            %s/metrics   health: /healthz /readyz\n", cfg.PublicURL)
	if a := n.DebugAddr(); a != "" {
		fmt.Fprintf(w, "  pprof:              http://%s/debug/pprof/ (loopback only)\n", a)
	}
	printTLSBanner(w, n, cfg.PublicURL)
	if n.DevMode() {
		fmt.Fprintf(w, "  DEVELOPMENT MODE: no --users file; calls without credentials are accepted as client id \"anonymous\",\n")
		fmt.Fprintf(w, "  and KSI PDU clients may use user anon / key anon. Wrong credentials are refused.\n")
	}
}

func newLogger(c *ucli.Context) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch c.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(c.App.ErrWriter, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(c.App.ErrWriter, opts)), nil
	}
	return nil, usageErrorf("--log-format %q: want text or json", c.String("log-format"))
}

// applyConfigFile sets every flag named in the --config file that was not
// given on the command line or in the environment.
func applyConfigFile(c *ucli.Context) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return inputErrorf("config: %v", err)
	}
	defer f.Close()
	known := map[string]bool{}
	for _, fl := range c.Command.Flags {
		for _, n := range fl.Names() {
			known[n] = true
		}
	}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		name, value, ok := strings.Cut(s, "=")
		if !ok {
			name, value, ok = strings.Cut(s, ":")
		}
		name, value = strings.TrimSpace(name), strings.Trim(strings.TrimSpace(value), `"`)
		if !ok || !known[name] || name == "config" {
			return usageErrorf("config %s line %d: want NAME = VALUE with NAME a serve flag", path, line)
		}
		if err := checkSecretSetting(f, path, name); err != nil {
			return err
		}
		if c.IsSet(name) {
			continue
		}
		if err := c.Set(name, value); err != nil {
			return usageErrorf("config %s line %d: %s: %v", path, line, name, err)
		}
	}
	return sc.Err()
}

// checkSecretSetting refuses a config file that holds a key (name
// upstream-key) while group or others may read it, as the users file and
// key files are refused.
func checkSecretSetting(f *os.File, path, name string) error {
	if name != "upstream-key" || runtime.GOOS == "windows" {
		return nil
	}
	st, err := f.Stat()
	if err != nil {
		return inputErrorf("config: %v", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return inputErrorf("config %s holds upstream-key and is readable by others (mode %o): run chmod 600 %s", path, perm, path)
	}
	return nil
}

// checkConnFlags refuses connection limits that would disable themselves,
// and a descriptor limit that leaves none for clients.
func checkConnFlags(cfg node.Config) error {
	if cfg.MaxConns < 1 {
		return usageErrorf("--max-conns %d: must be at least 1", cfg.MaxConns)
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"read-timeout", cfg.ReadTimeout}, {"write-timeout", cfg.WriteTimeout}, {"idle-timeout", cfg.IdleTimeout}} {
		if f.d <= 0 {
			return usageErrorf("--%s %s: must be positive (connections are never held without a bound)", f.name, f.d)
		}
	}
	// Before anything starts: a descriptor limit too low for any client.
	if _, err := server.MaxConnsAllowed(cfg.MaxConns); err != nil {
		return inputErrorf("%v", err)
	}
	return nil
}

// tsaConfig reads the RFC 3161 TSA's flags into cfg.
func tsaConfig(c *ucli.Context, cfg *node.Config) error {
	cfg.TSACert, cfg.TSAKey, cfg.TSAQCStatement = c.String("tsa-cert"), c.String("tsa-key"), c.Bool("tsa-qc-statement")
	if (cfg.TSACert == "") != (cfg.TSAKey == "") {
		return usageErrorf("--tsa-cert and --tsa-key go together")
	}
	for _, s := range strings.Split(c.String("tsa-policy"), ",") {
		oid, err := parseOID(strings.TrimSpace(s))
		if err != nil {
			return usageErrorf("--tsa-policy %q: %v", s, err)
		}
		cfg.TSAPolicies = append(cfg.TSAPolicies, oid)
	}
	return nil
}

// parseOID reads a dotted object identifier of at least two arcs.
func parseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("not a dotted OID")
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("arc %q is not a number", p)
		}
		oid[i] = v
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, fmt.Errorf("not a valid OID")
	}
	return oid, nil
}
