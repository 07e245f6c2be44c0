package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/internal/node"
)

func calendarCommand() *ucli.Command {
	dataDir := &ucli.StringFlag{Name: "data-dir", Value: defaultDataDir, Usage: "the server's data `DIR`", EnvVars: []string{"TEMPEL_DATA_DIR"}}
	watermark := &ucli.StringFlag{Name: "watermark", Usage: "the watermark `FILE`, if the server keeps it outside DATA-DIR (its --watermark)", EnvVars: []string{"TEMPEL_WATERMARK"}}
	jsonFlag := &ucli.BoolFlag{Name: "json", Usage: "print JSON"}
	return &ucli.Command{
		Name:  "calendar",
		Usage: "check a calendar store offline, or accept lost history",
		Description: "The calendar keeps a watermark apart from its store: the last second and the\n" +
			"newest publication it answered. A server refuses to start when the store has less\n" +
			"(a damaged or truncated WAL, a store replaced by an older copy).\n\n" +
			"Stop the server before using these commands.",
		Subcommands: []*ucli.Command{
			{
				Name:  "check",
				Usage: "run the full consistency check of DATA-DIR offline (exit 0 clean, 1 damaged)",
				Description: "Recomputes every node of the calendar from its leaves, compares the store with its\n" +
					"watermark, checks every publication against the calendar and the stored\n" +
					"publications file, and lists the losses an operator accepted.",
				Flags:  []ucli.Flag{dataDir, watermark, jsonFlag},
				Action: runCalendarCheck,
			},
			{
				Name:  "accept-loss",
				Usage: "accept what the store lost against its watermark, record it, and let the server start",
				Description: "When 'tempel serve' refuses to start because the store has less than its\n" +
					"watermark says was answered, and no newer copy of the data directory exists,\n" +
					"this records the accepted gap (with --reason) in the store for good, appends the\n" +
					"lost seconds as empty leaves so that they are never signed again, and resets the\n" +
					"watermark. Signatures of the lost seconds no longer verify; no publication is made\n" +
					"again at or before a lost one.",
				Flags: []ucli.Flag{dataDir, watermark, jsonFlag,
					&ucli.StringFlag{Name: "reason", Required: true, Usage: "why the loss is accepted (kept with the record), e.g. a ticket `TEXT`"}},
				Action: runAcceptLoss,
			},
		},
	}
}

// checkReport is what 'tempel calendar check' found.
type checkReport struct {
	DataDir      string                `json:"data_dir"`
	First        uint64                `json:"first_second,omitempty"`
	Last         uint64                `json:"last_second,omitempty"`
	Watermark    *calendar.Mark        `json:"watermark,omitempty"`
	Publications int                   `json:"publications"`
	Losses       []calendar.LossRecord `json:"accepted_losses,omitempty"`
	Problems     []string              `json:"problems"`
}

func runCalendarCheck(c *ucli.Context) error {
	dir := c.String("data-dir")
	rep := checkReport{DataDir: dir, Problems: []string{}}
	storeDir := filepath.Join(dir, "calendar")
	if !calendar.StoreExists(storeDir) {
		if p := missingStore(dir, c.String("watermark")); p != "" {
			rep.Problems = append(rep.Problems, p)
			return printCheck(c, rep)
		}
		if _, err := os.Stat(storeDir); err == nil {
			return printCheck(c, rep) // a calendar not yet begun
		}
	}
	st, err := calendar.OpenStore(storeDir, calendar.StoreOptions{ReadOnly: true, Logger: discardLog()})
	if err != nil {
		if !errors.Is(err, calendar.ErrCorrupt) {
			return inputErrorf("%v", err)
		}
		rep.Problems = append(rep.Problems, err.Error())
		return printCheck(c, rep)
	}
	defer st.Close()
	first, last, has := st.Head()
	if has {
		rep.First, rep.Last = first, last
	}
	if err := st.Check(); err != nil {
		rep.Problems = append(rep.Problems, "calendar tree: "+err.Error())
	}
	markPath := node.WatermarkPath(dir, c.String("watermark"))
	w, found, err := calendar.OpenWatermark(markPath, false)
	switch {
	case err != nil:
		rep.Problems = append(rep.Problems, err.Error())
	default:
		var m calendar.Mark
		if found {
			m = w.Mark()
			rep.Watermark = &m
			w.Close()
		}
		if err := st.CheckMark(m, found); err != nil {
			if loss := (*calendar.LossError)(nil); errors.As(err, &loss) {
				loss.MarkPath = markPath
			}
			rep.Problems = append(rep.Problems, err.Error())
		}
	}
	if rep.Publications, err = st.CheckPublications(); err != nil {
		rep.Problems = append(rep.Problems, "publications: "+err.Error())
	}
	if rep.Losses, err = st.LossRecords(); err != nil {
		rep.Problems = append(rep.Problems, err.Error())
	}
	return printCheck(c, rep)
}

// missingStore is the problem with a data directory without a store:
// none for a calendar that never answered (or a wrong --data-dir, which
// OpenStore then reports), else what its watermark says was lost.
func missingStore(dir, watermark string) string {
	w, found, err := calendar.OpenWatermark(node.WatermarkPath(dir, watermark), false)
	if err != nil {
		return err.Error()
	}
	if !found {
		return ""
	}
	defer w.Close()
	if err := calendar.CheckMarkNoStore(w.Mark()); err != nil {
		return fmt.Sprintf("the store %s is missing: %v", filepath.Join(dir, "calendar"), err)
	}
	return ""
}

func printCheck(c *ucli.Context, rep checkReport) error {
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "data directory:  %s\n", rep.DataDir)
		if rep.Last != 0 {
			fmt.Fprintf(w, "calendar:        seconds %d (%s) to %d (%s)\n", rep.First, utcSecond(rep.First), rep.Last, utcSecond(rep.Last))
		}
		if m := rep.Watermark; m != nil {
			fmt.Fprintf(w, "watermark:       answered through %d, newest publication served %d\n", m.Last, m.Pub)
		}
		fmt.Fprintf(w, "publications:    %d\n", rep.Publications)
		for _, l := range rep.Losses {
			fmt.Fprintf(w, "accepted loss:   %s: had through %d, found %d, reason %q\n", l.AcceptedAt.Format(time.RFC3339), l.HadLast, l.FoundLast, l.Reason)
		}
		for _, p := range rep.Problems {
			fmt.Fprintf(w, "PROBLEM:         %s\n", p)
		}
		if len(rep.Problems) == 0 {
			fmt.Fprintln(w, "result:          clean")
		} else {
			fmt.Fprintf(w, "result:          damaged (%d problems)\n", len(rep.Problems))
		}
	}
	if len(rep.Problems) > 0 {
		return silentExit(ExitFailed)
	}
	return nil
}

func runAcceptLoss(c *ucli.Context) error {
	dir := c.String("data-dir")
	rec, err := node.AcceptLoss(dir, c.String("watermark"), c.String("reason"), time.Now())
	if errors.Is(err, calendar.ErrNothingToAccept) {
		fmt.Fprintln(c.App.Writer, "nothing to accept: the store has everything its watermark says was answered")
		return nil
	}
	if err != nil {
		return inputErrorf("%v", err)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(rec)
	}
	w := c.App.Writer
	switch {
	case rec.NoMark:
		fmt.Fprintf(w, "accepted and recorded: the watermark was missing, the store had %d\n", rec.FoundLast)
	case rec.FoundNone:
		fmt.Fprintf(w, "accepted and recorded: the watermark had second %d, the store was empty\n", rec.HadLast)
	default:
		fmt.Fprintf(w, "accepted and recorded: the watermark had second %d, the store had %d\n", rec.HadLast, rec.FoundLast)
	}
	if rec.FilledTo != 0 {
		fmt.Fprintf(w, "seconds %d to %d are now empty leaves: their signatures no longer verify\n", rec.FilledFrom, rec.FilledTo)
	}
	if floor := max(rec.HadPub, rec.PubFloor); floor != 0 {
		fmt.Fprintf(w, "no publication will be made at or before %d again\n", floor)
	}
	fmt.Fprintln(w, "the server can be started again")
	return nil
}

func utcSecond(t uint64) string { return time.Unix(int64(t), 0).UTC().Format(time.RFC3339) }

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
