// Command picomigrate reads every enrollment from a PicoMDM storage backend
// and replays it, as the check-in messages that created it, to a PicoMDM
// or NanoMDM server's /migration endpoint: per device its Authenticate,
// its TokenUpdate (with the UnlockToken), its user channels' TokenUpdates
// and its SetBootstrapToken, in that order.
//
//	picomigrate -storage file -storage-dsn db -url https://mdm.example.com/migration -api "$KEY"
//
// The target server must run with -migration (and usually -retro, so that
// migrated devices can associate their certificates on first contact).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/picomdm/picomdm/mdm"
	"github.com/picomdm/picomdm/storage"
	"github.com/picomdm/picomdm/storage/backends"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "picomigrate:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("picomigrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		name     = fs.String("storage", "file", "source storage backend")
		dsn      = fs.String("storage-dsn", "", "source storage data source (default \"db\" for file)")
		options  = fs.String("storage-options", "", "source storage options")
		url      = fs.String("url", "", "target server's /migration URL")
		apiKey   = fs.String("api", "", "target server's API key")
		dryRun   = fs.Bool("dry-run", false, "read and decode everything, send nothing")
		verbose  = fs.Bool("v", false, "print every message sent")
		progress = fs.Int("progress", 100, "print progress every N messages")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*dryRun && (*url == "" || *apiKey == "") {
		return errors.New("-url and -api are required (or -dry-run)")
	}
	// The source backend's own lines (migrations, driver messages) go to
	// stderr, in the text format the rest of picomigrate's output uses.
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	src, closeFn, err := backends.Open(*name, *dsn, *options, backends.WithLogger(logger))
	if err != nil {
		return err
	}
	if closeFn != nil {
		defer closeFn()
	}
	var send Sender = func(context.Context, []byte) error { return nil }
	if !*dryRun {
		send = HTTPSender(http.DefaultClient, *url, *apiKey)
	}
	stats, err := Replay(ctx, src, send, Progress{Out: stdout, Every: *progress, Verbose: *verbose})
	fmt.Fprintf(stdout, "done: %d messages (%d devices), %d failed%s\n", stats.Sent, stats.Devices, stats.Failed, map[bool]string{true: " (dry run)"}[*dryRun])
	if err != nil {
		return err
	}
	if stats.Failed > 0 {
		return fmt.Errorf("%d messages failed", stats.Failed)
	}
	return nil
}

// Sender delivers one raw check-in plist to the target server.
type Sender func(ctx context.Context, raw []byte) error

// HTTPSender PUTs each message to url with the API's Basic auth; anything
// but a 200 is an error carrying the status and body.
func HTTPSender(client *http.Client, url, apiKey string) Sender {
	return func(ctx context.Context, raw []byte) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(raw))
		if err != nil {
			return err
		}
		req.SetBasicAuth("nanomdm", apiKey)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("server answered %s: %s", resp.Status, bytes.TrimSpace(body))
		}
		return nil
	}
}

// Progress says where and how often Replay reports.
type Progress struct {
	Out     io.Writer
	Every   int
	Verbose bool
}

// Stats counts what Replay did.
type Stats struct {
	Sent, Failed, Devices int
}

// Replay reads every migration message from src, in order, and sends each.
// A message that fails to send is counted and reported, and the replay
// goes on with the next one; an undecodable message or a source error
// stops it.
func Replay(ctx context.Context, src storage.MigrationStore, send Sender, p Progress) (Stats, error) {
	var st Stats
	if p.Out == nil {
		p.Out = io.Discard
	}
	err := src.RetrieveMigrationCheckins(ctx, func(raw []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		msg, err := mdm.DecodeCheckin(raw)
		if err != nil {
			return fmt.Errorf("source yielded an undecodable message: %w", err)
		}
		id, _ := msg.EnrollmentKeys().Resolve()
		label := msg.Type()
		if id != nil {
			label += " " + id.ID
		}
		if msg.Type() == mdm.MessageAuthenticate {
			st.Devices++
		}
		if err := send(ctx, raw); err != nil {
			st.Failed++
			fmt.Fprintf(p.Out, "FAILED %s: %v\n", label, err)
			return nil
		}
		st.Sent++
		if p.Verbose {
			fmt.Fprintf(p.Out, "sent %s\n", label)
		}
		if p.Every > 0 && st.Sent%p.Every == 0 {
			fmt.Fprintf(p.Out, "progress: %d messages (%d devices)\n", st.Sent, st.Devices)
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("reading enrollments: %w", err)
	}
	return st, nil
}
